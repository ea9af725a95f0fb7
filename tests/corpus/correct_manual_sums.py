# corpus: two-pass mean/variance with explicit sums divided by the element count
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
        if self.training and torch.is_grad_enabled():
            if len(X.shape) == 2:
                n = X.shape[0]
                mean = X.sum(dim=0, keepdim=True) / n
                var = ((X - mean) ** 2).sum(dim=0, keepdim=True) / n
            else:
                n = X.shape[0] * X.shape[2] * X.shape[3]
                mean = X.sum(dim=(0, 2, 3), keepdim=True) / n
                var = ((X - mean) ** 2).sum(dim=(0, 2, 3), keepdim=True) / n
            # update the running averages (no graph!)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean = self.moving_mean
            var = self.moving_var
        X_hat = (X - mean) / (var + self.eps) ** 0.5
        return self.gamma * X_hat + self.beta
