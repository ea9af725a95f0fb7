# corpus: statistics computed with numpy on the tensor's data (breaks autograd in training)
# expect: fail forward.train.4d=numpy_on_tensor forward.train.2d=numpy_on_tensor hyperparams.eps=numpy_on_tensor running_stats=numpy_on_tensor hyperparams.momentum=numpy_on_tensor eval.frozen=numpy_on_tensor gradients=numpy_on_tensor hygiene.input_unchanged=numpy_on_tensor hygiene.stats_detached=numpy_on_tensor integration.lenet=numpy_on_tensor
# notes: advice.buffers=not_buffers
import numpy as np
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if not self.training or not torch.is_grad_enabled():
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            axis = 0 if X.dim() == 2 else (0, 2, 3)
            x = X.numpy()
            mean = torch.from_numpy(np.mean(x, axis=axis, keepdims=True))
            var = torch.from_numpy(np.var(x, axis=axis, keepdims=True))
            X_hat = (X - mean) / torch.sqrt(var + self.eps)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var
        return self.gamma * X_hat + self.beta
