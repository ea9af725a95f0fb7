# corpus: one mean and one variance for the whole batch tensor
# expect: fail forward.train.4d=wrong_axes_global forward.train.2d=wrong_axes_global hyperparams.eps=wrong_axes_global running_stats=wrong_axes_global hyperparams.momentum=wrong_axes_global gradients=wrong_axes_global integration.lenet=-
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
            mu = X.mean()
            sigma2 = ((X - mu) ** 2).mean()
            self.moving_mean = self.momentum * self.moving_mean + (1 - self.momentum) * mu.item()
            self.moving_var = self.momentum * self.moving_var + (1 - self.momentum) * sigma2.item()
        else:
            mu, sigma2 = self.moving_mean, self.moving_var
        X_hat = (X - mu) / torch.sqrt(sigma2 + self.eps)
        return self.gamma * X_hat + self.beta
