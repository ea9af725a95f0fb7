# corpus: the (N, C) branch normalises each sample over its features (layer-norm-like)
# expect: fail forward.train.2d=wrong_axes running_stats=wrong_axes gradients=wrong_axes integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = [1, num_features] + [1] * (num_dims - 2)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if not torch.is_grad_enabled() or not self.training:
            mean, var = self.moving_mean, self.moving_var
        else:
            if X.dim() == 4:
                mean = X.mean(dim=(0, 2, 3), keepdim=True)
                var = X.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
                self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
                self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
            else:
                mean = X.mean(dim=1, keepdim=True)       # mean of each row
                var = X.var(dim=1, unbiased=False, keepdim=True)
                self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
                self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
