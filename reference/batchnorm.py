"""Reference BatchNorm2d in the course convention (ch. 9 slides).

Runs in the grader's parent process only. The functional pieces are kept separate so the
checks can replay a sequence of training steps without a module, and so the known-mistake
variants in grader/checks/mistakes.py can be compared against the exact same formulas.
"""
import torch
from torch import nn


def reduce_dims(x):
    # per-channel statistics: over the batch for (N, C), over batch and space for (N, C, H, W)
    return (0,) if x.dim() == 2 else (0, 2, 3)


def batch_stats(x, unbiased=False):
    # biased variance (divide by the count) is the slide's sigma^2; var_mean is one fused,
    # numerically stable pass (it matters: the training stage runs this layer 4x per step)
    var, mean = torch.var_mean(x, dim=reduce_dims(x), correction=1 if unbiased else 0, keepdim=True)
    return mean, var


def count(x):
    dims = reduce_dims(x)
    n = 1
    for d in dims:
        n *= x.shape[d]
    return n


def normalize(x, mean, var, gamma, beta, eps):
    # gamma * (x - mean) / sqrt(var + eps) + beta, as one scale and one shift per channel: two
    # full-size operations instead of four
    scale = gamma * torch.rsqrt(var + eps)
    return x * scale + (beta - mean * scale)


def decay(moving, stat, momentum):
    # momentum is a decay: the old estimate keeps weight m (the opposite of torch.nn)
    return momentum * moving + (1.0 - momentum) * stat


class BatchNorm2d(nn.Module):
    def __init__(self, num_features, num_dims, momentum=0.9, eps=1e-5, *, unbiased_running_var=False):
        super().__init__()
        # the slides keep the biased variance; torch.nn the unbiased one (graded as acceptable)
        self.unbiased_running_var = unbiased_running_var
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        # buffers, unlike the template's plain tensors, follow .to() and appear in state_dict
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.ones(shape))
        self.momentum = momentum
        self.eps = eps

    def forward(self, X):
        if self.training and torch.is_grad_enabled():
            mean, var = batch_stats(X)
            with torch.no_grad():
                n = count(X)
                stored = var * n / (n - 1) if self.unbiased_running_var else var
                self.moving_mean.copy_(decay(self.moving_mean, mean, self.momentum))
                self.moving_var.copy_(decay(self.moving_var, stored, self.momentum))
        else:
            mean, var = self.moving_mean, self.moving_var
        return normalize(X, mean, var, self.gamma, self.beta, self.eps)
