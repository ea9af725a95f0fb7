# corpus: gamma and beta shaped (C,), multiplied onto (N, C, H, W): they line up with W
# expect: fail structure.4d=wrong_param_shape structure.2d=wrong_param_shape forward.train.4d=affine_last_axis running_stats=affine_last_axis eval.forward=affine_last_axis gradients=affine_last_axis integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            dims = (0,) if X.dim() == 2 else (0, 2, 3)
            mean = X.mean(dim=dims, keepdim=True)
            var = X.var(dim=dims, unbiased=False, keepdim=True)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean, var = self.moving_mean, self.moving_var
        x_hat = (X - mean) / torch.sqrt(var + self.eps)
        return self.gamma * x_hat + self.beta
