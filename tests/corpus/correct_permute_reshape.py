# corpus: 4-D input permuted to (N*H*W, C), statistics along dim 0, reshaped back
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
        if X.dim() == 4:
            N, C, H, W = X.shape
            X2 = X.permute(0, 2, 3, 1).reshape(-1, C)   # (N*H*W, C)
        else:
            C = X.shape[1]
            X2 = X
        g = self.gamma.reshape(1, C)
        b = self.beta.reshape(1, C)
        rm = self.moving_mean.reshape(1, C)
        rv = self.moving_var.reshape(1, C)

        if self.training and torch.is_grad_enabled():
            mean = X2.mean(dim=0, keepdim=True)
            var = ((X2 - mean) ** 2).mean(dim=0, keepdim=True)
            with torch.no_grad():
                new_mean = self.momentum * rm + (1 - self.momentum) * mean
                new_var = self.momentum * rv + (1 - self.momentum) * var
                self.moving_mean = new_mean.reshape(self.moving_mean.shape)
                self.moving_var = new_var.reshape(self.moving_var.shape)
        else:
            mean, var = rm, rv

        Y2 = g * (X2 - mean) / torch.sqrt(var + self.eps) + b
        if X.dim() == 4:
            Y = Y2.reshape(N, H, W, C).permute(0, 3, 1, 2)
        else:
            Y = Y2
        return Y
