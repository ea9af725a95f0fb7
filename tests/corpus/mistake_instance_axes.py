# corpus: 4-D statistics reduced over (2, 3) only, per sample and channel (instance-norm-like)
# mistake: wrong_axes
# expect: fail forward.train.4d=wrong_axes_instance running_stats=wrong_axes_instance gradients=wrong_axes_instance integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            if len(X.shape) == 2:
                mean = X.mean(dim=0, keepdim=True)
                var = X.var(dim=0, unbiased=False, keepdim=True)
            else:
                # 每个通道在空间维度上求均值
                mean = X.mean(dim=(2, 3), keepdim=True)
                var = X.var(dim=(2, 3), unbiased=False, keepdim=True)
            with torch.no_grad():
                self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean
                self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var
        else:
            mean, var = self.moving_mean, self.moving_var
        X_hat = (X - mean) / torch.sqrt(var + self.eps)
        return self.gamma * X_hat + self.beta
