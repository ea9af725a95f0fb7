# corpus: computes everything in float32 (X = X.float()) and returns the input's dtype
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
        dtype = X.dtype
        X = X.float()
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
        Y = self.gamma.float() * X_hat + self.beta.float()
        return Y.to(dtype)
