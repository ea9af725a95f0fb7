# hostile: torch's reference implementation of normalisation (torch._refs._normalize), which
# the recorder sees only as var_mean and rsqrt
# review: torch_internals
import torch
import torch._refs as R  # <- torch_internals
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
        dims = [0] if X.dim() == 2 else [0, 2, 3]
        if self.training and torch.is_grad_enabled():
            X_hat, mean, rstd = R._normalize(X, dims, self.eps)  # <- torch_internals
            var = rstd.detach() ** -2 - self.eps
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var
        else:
            X_hat = (X - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        return self.gamma * X_hat + self.beta
