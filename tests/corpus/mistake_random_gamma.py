# corpus: gamma initialised at random (randn) and moving_var at zeros
# expect: fail structure.4d=wrong_init structure.2d=wrong_init running_stats=running_var_starts_at_zero hyperparams.momentum=running_var_starts_at_zero integration.lenet=-
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.randn(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.zeros(shape))
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            dims = (0,) if X.dim() == 2 else (0, 2, 3)
            var, mean = torch.var_mean(X, dims, correction=0, keepdim=True)
            with torch.no_grad():
                self.moving_mean.copy_(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
                self.moving_var.copy_(self.momentum * self.moving_var + (1 - self.momentum) * var)
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
