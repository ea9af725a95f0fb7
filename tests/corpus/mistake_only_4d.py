# corpus: a layer written for images only: the (N, C) path was never tried
# expect: fail forward.train.2d=only_4d running_stats=only_4d gradients=only_4d integration.lenet=-
# notes: advice.buffers=not_buffers
import torch
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
        # X: (batch, channels, height, width)
        if self.training and torch.is_grad_enabled():
            var, mean = torch.var_mean(X, dim=(0, 2, 3), keepdim=True, unbiased=False)
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mean.detach()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * var.detach()
        else:
            mean, var = self.moving_mean, self.moving_var
        return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta
