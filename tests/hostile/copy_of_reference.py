# hostile: the grader's reference layer, retyped with new names and without its unbiased
# option (what a student does with a leaked reference/batchnorm.py)
# review: copy_of_reference
import torch
from torch import nn


def stat_dims(inp):
    # statistics per channel
    return (0,) if inp.dim() == 2 else (0, 2, 3)


def moments(inp, unbiased=False):
    v, m = torch.var_mean(inp, dim=stat_dims(inp), correction=1 if unbiased else 0, keepdim=True)
    return m, v


def apply_norm(inp, m, v, g, b, epsilon):
    s = g * torch.rsqrt(v + epsilon)
    return inp * s + (b - m * s)


def ema(old, new, mom):
    return mom * old + (1.0 - mom) * new


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.ones(shape))
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            m, v = moments(X)
            with torch.no_grad():
                self.moving_mean.copy_(ema(self.moving_mean, m, self.momentum))
                self.moving_var.copy_(ema(self.moving_var, v, self.momentum))
        else:
            m, v = self.moving_mean, self.moving_var
        return apply_norm(X, m, v, self.gamma, self.beta, self.eps)


if __name__ == "__main__":
    layer = BatchNorm2d(3, 4)
    print(layer(torch.randn(2, 3, 4, 4)).shape)
