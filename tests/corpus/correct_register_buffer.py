# corpus: running stats as registered buffers, updated in place under torch.no_grad(), switches on self.training
# expect: full
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
        # buffers follow .to(device) and show up in state_dict
        self.register_buffer('moving_mean', torch.zeros(shape))
        self.register_buffer('moving_var', torch.ones(shape))
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        if self.training:
            mean = X.mean(dim=dims, keepdim=True)
            var = X.var(dim=dims, unbiased=False, keepdim=True)
            with torch.no_grad():
                self.moving_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
                self.moving_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        else:
            mean = self.moving_mean
            var = self.moving_var
        X_hat = (X - mean) / torch.sqrt(var + self.eps)
        return self.gamma * X_hat + self.beta
