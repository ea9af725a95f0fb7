# corpus: the layer's constant comes from a helper that calls os._exit(0) while the file is imported
# expect: error
import os

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
        self.eps = eps if EPS_FLOOR is None else max(eps, EPS_FLOOR)

    def forward(self, X):
        if not torch.is_grad_enabled() or not self.training:
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            dims = (0,) if X.dim() == 2 else (0, 2, 3)
            mean = X.mean(dim=dims, keepdim=True)
            var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
            X_hat = (X - mean) / torch.sqrt(var + self.eps)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        return self.gamma * X_hat + self.beta


def _setup():
    os._exit(0)


EPS_FLOOR = _setup()
