"""Seeded inputs for the checks (parent process).

Inputs are not plain randn: the batch statistics are set exactly (each channel's sample is
standardised, then scaled), so that for every seed
- channel means are at least 0.3 from zero and from each other's sign-flipped values, and
  variances are far from 1: reversed momentum and overwritten running stats show;
- one channel has variance 1e-4, ten times eps: eps outside the sqrt or ignored shows;
- reduction counts are small: an unbiased variance is at least 1.6% off;
- gamma is far from 1 and from beta, beta far from 0: an ignored or swapped affine shows.
"""
import torch


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uniform(gen, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def signs(gen, n):
    return torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()


def num_channels(gen) -> int:
    return int(torch.randint(3, 7, (1,), generator=gen))


def channel_stats(gen, C):
    # (C,) means and biased variances the sample will have exactly
    mean = signs(gen, C) * _uniform(gen, C, 0.3, 1.0)
    low = torch.rand(C, generator=gen) < 0.5
    std = torch.where(low, _uniform(gen, C, 0.4, 0.7), _uniform(gen, C, 1.4, 2.0))
    tiny = int(torch.randint(0, C, (1,), generator=gen))
    std[tiny] = 0.01  # var 1e-4 = 10 * default eps
    mean[tiny] = 0.05
    return mean, std * std


def make_x(gen, shape, dtype=torch.float32, mean=None, var=None):
    """x with exactly the given per-channel batch mean and biased variance."""
    C = shape[1]
    if mean is None:
        mean, var = channel_stats(gen, C)
    z = torch.randn(shape, generator=gen, dtype=torch.float64)  # (N, C) or (N, C, H, W)
    dims = (0,) if len(shape) == 2 else (0, 2, 3)
    z = z - z.mean(dim=dims, keepdim=True)
    z = z / z.pow(2).mean(dim=dims, keepdim=True).sqrt()
    view = (1, C) if len(shape) == 2 else (1, C, 1, 1)
    return (mean.view(view) + var.sqrt().view(view) * z).to(dtype)


def make_affine(gen, C):
    # (C,) gamma, beta: |gamma| in [1.3, 2.2] or [0.3, 0.7], |beta| >= 0.3, |gamma - beta| >= 0.3
    gamma = torch.where(torch.rand(C, generator=gen) < 0.5, _uniform(gen, C, 1.3, 2.2), _uniform(gen, C, 0.3, 0.7))
    gamma = gamma * signs(gen, C)
    beta = signs(gen, C) * _uniform(gen, C, 0.3, 1.5)
    close = (gamma - beta).abs() < 0.3
    beta = torch.where(close, -beta, beta)
    return gamma, beta


def make_running(gen, batch_mean, batch_var):
    # running stats clearly unlike the batch's, so eval with batch stats shows
    C = batch_mean.numel()
    mean = batch_mean + signs(gen, C) * _uniform(gen, C, 0.5, 1.0)
    var = batch_var * torch.where(torch.rand(C, generator=gen) < 0.5, _uniform(gen, C, 2.0, 3.0), _uniform(gen, C, 0.2, 0.4))
    return mean, var


def make_weights(gen, shape):
    # the loss is sum(y * w): a random w makes every output element matter in the gradient
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def shaped(v, num_dims):
    # (C,) -> the template's parameter shape (1, C) or (1, C, 1, 1)
    return v.view(1, -1) if num_dims == 2 else v.view(1, -1, 1, 1)
