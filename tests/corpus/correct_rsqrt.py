# corpus: torch.rsqrt(var + eps); 2-D input is viewed as (N, C, 1, 1) and handled by the 4-D code path
# expect: full
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
        is_2d = X.dim() == 2
        if is_2d:
            N, C = X.shape
            X = X.view(N, C, 1, 1)
        C = X.shape[1]
        gamma = self.gamma.view(1, C, 1, 1)
        beta = self.beta.view(1, C, 1, 1)

        if self.training and torch.is_grad_enabled():
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = (X - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
            with torch.no_grad():
                mm = self.moving_mean.view(1, C, 1, 1)
                mv = self.moving_var.view(1, C, 1, 1)
                mm = self.momentum * mm + (1 - self.momentum) * mean
                mv = self.momentum * mv + (1 - self.momentum) * var
                self.moving_mean = mm.view(self.moving_mean.shape)
                self.moving_var = mv.view(self.moving_var.shape)
        else:
            mean = self.moving_mean.view(1, C, 1, 1)
            var = self.moving_var.view(1, C, 1, 1)

        Y = (X - mean) * torch.rsqrt(var + self.eps) * gamma + beta
        if is_2d:
            Y = Y.view(N, C)
        return Y
