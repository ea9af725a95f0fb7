# corpus: mentions batch_norm in strings (a name, an error message) without using torch's
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
        self.kind = "batch_norm"
        if num_dims not in (2, 4):
            raise ValueError("BatchNorm2d: like nn.BatchNorm2d, num_dims must be 2 or 4")

    def forward(self, X):
        if not torch.is_grad_enabled() or not self.training:
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            if X.dim() == 2:
                var, mean = torch.var_mean(X, dim=0, correction=0, keepdim=True)
            else:
                var, mean = torch.var_mean(X, dim=(0, 2, 3), correction=0, keepdim=True)
            X_hat = (X - mean) / torch.sqrt(var + self.eps)
            m = self.momentum
            self.moving_mean = m * self.moving_mean + (1 - m) * mean.detach()
            self.moving_var = m * self.moving_var + (1 - m) * var.detach()
        Y = self.gamma * X_hat + self.beta
        return Y
