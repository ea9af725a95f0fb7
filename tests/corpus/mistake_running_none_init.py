# corpus: running statistics start as None and are set from the first batch
# expect: fail structure.4d=wrong_init structure.2d=wrong_init running_stats=running_init_first_batch hyperparams.momentum=running_init_first_batch integration.lenet=-
import torch
from torch import nn


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        self.num_dims = num_dims
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = None
        self.moving_var = None
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        if self.training and torch.is_grad_enabled():
            mean = X.mean(dim=dims, keepdim=True)
            var = X.var(dim=dims, keepdim=True, unbiased=False)
            if self.moving_mean is None:  # first batch: nothing to average with yet
                self.moving_mean, self.moving_var = mean.detach(), var.detach()
            else:
                self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
                self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            if self.moving_mean is None:
                mean, var = X.mean(dim=dims, keepdim=True), X.var(dim=dims, keepdim=True, unbiased=False)
            else:
                mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
