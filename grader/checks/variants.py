"""The formula variants: the course's formula and each known mistake as runnable code (parent
process, full edition only: the student edition ships without this module, since Variant() here
computes a working BatchNorm).

checks/mistakes.py describes the variants (fields) and names them; this module computes them. Only
checks/computed.py (the full edition's oracle) and the tests call it.
"""
import torch

from grader.checks.mistakes import NAMED_AXES, Variant
from reference.batchnorm import count, reduce_dims


def dims_of(v: Variant, x):
    if v.axes is None:
        return reduce_dims(x)
    if isinstance(v.axes, str):
        dims = NAMED_AXES[v.axes].get(x.dim())
        if dims is None:
            raise ValueError(f"no {v.axes} axes for a {x.dim()}-D input")
        return dims
    return tuple(v.axes)


def _stats(v: Variant, x):
    # as a student writes it: x - mean broadcasts whatever shape mean has (from the right)
    dims = dims_of(v, x)
    mean = x.mean(dim=dims, keepdim=v.keepdim)
    if v.var_direct:
        var = ((x - x.mean(dim=dims, keepdim=True)) ** 2).mean(dim=dims, keepdim=v.keepdim)
    else:
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=v.keepdim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    return mean, var, n


def _normalize(v: Variant, x, mean, var, gamma, beta, eps, n, unbiased, mode="train"):
    if unbiased:
        var = var * n / (n - 1)
    if v.eps_mode == "fixed":
        eps = 1e-5
    if mode == "eval" and v.eval_var_as_std:
        denom = var + eps if v.eps_mode in ("inside", "outside", "fixed") else var
    elif v.eps_mode == "outside":
        denom = torch.sqrt(var) + eps
    elif v.eps_mode == "none":
        denom = torch.sqrt(var)
    else:
        denom = torch.sqrt(var + eps)
    xhat = (x - mean) / denom
    affine = v.affine
    if (affine == "train_only" and mode != "train") or (affine == "eval_only" and mode == "train"):
        affine = "ignored"
    if affine == "ignored":
        return xhat
    if affine == "swapped":
        return beta * xhat + gamma
    if affine == "beta_times":
        return gamma * xhat * beta
    if affine == "last_axis":
        return gamma.reshape(-1) * xhat + beta.reshape(-1)
    return gamma * xhat + beta


def _per_channel(t, x):
    return t.view(1, -1) if x.dim() == 2 else t.view(1, -1, 1, 1)


def train_forward(v: Variant, x, gamma, beta, eps, momentum=0.9):
    """y in training mode on a fresh module; gamma/beta shaped like the template's parameters."""
    if v.train_stats == "updated_running":
        C = x.shape[1]
        mm, mv = running_update(v, *running_start(v, C, x.dtype), x, momentum)
        return _normalize(v, x, _per_channel(mm, x), _per_channel(mv, x), gamma, beta, eps, 2, False)
    mean, var, n = _stats(v, x)
    if v.detach_stats in (True, "mean"):
        mean = mean.detach()
    if v.detach_stats in (True, "var"):
        var = var.detach()
    return _normalize(v, x, mean, var, gamma, beta, eps, n, v.unbiased_norm)


def eval_forward(v: Variant, x, gamma, beta, moving_mean, moving_var, eps, momentum):
    if v.eval_stats == "batch":
        mean, var, n = _stats(v, x)
        return _normalize(v, x, mean, var, gamma, beta, eps, n, v.unbiased_norm, mode="eval")
    if v.eval_stats == "blended":
        mean, var, _ = _stats(v, x)
        moving_mean = momentum * moving_mean + (1 - momentum) * mean
        moving_var = momentum * moving_var + (1 - momentum) * var
    if v.update_in_eval:
        # updated first, then used: the output already sees this batch
        shape = moving_mean.shape
        mm, mv = running_update(v, moving_mean.reshape(-1), moving_var.reshape(-1), x, momentum, step=2)
        moving_mean, moving_var = mm.view(shape), mv.view(shape)
    return _normalize(v, x, moving_mean, moving_var, gamma, beta, eps, 2, False, mode="eval")


def running_start(v: Variant, C, dtype=torch.float64):
    """(moving_mean, moving_var) of a fresh module, (C,)."""
    var0 = torch.zeros(C, dtype=dtype) if v.running_init == "var_zero" else torch.ones(C, dtype=dtype)
    return torch.zeros(C, dtype=dtype), var0


def running_update(v: Variant, moving_mean, moving_var, x, momentum, step=2):
    """(moving_mean, moving_var) after training step number `step` on x; (C,) tensors."""
    if v.update == "none":
        return moving_mean, moving_var
    dims = reduce_dims(x)
    n = count(x)
    mean = x.mean(dim=dims)
    var = ((x - x.mean(dim=dims, keepdim=True)) ** 2).sum(dim=dims) / n
    if v.axes == "global":  # one number for the whole tensor, stored in every channel
        n = x.numel()
        mean, var = x.mean().expand_as(mean), ((x - x.mean()) ** 2).mean().expand_as(var)
    if v.running_var == "unbiased":
        var = var * n / (n - 1)
    elif v.running_var == "std":
        var = var.sqrt()
    if v.update == "overwrite" or (v.running_init == "first_batch" and step == 1):
        return mean, var
    m = {"fixed": 0.9, "fixed_reversed": 0.1}.get(v.update, momentum)
    if v.update == "reversed":
        m = 1.0 - m
    return m * moving_mean + (1 - m) * mean, m * moving_var + (1 - m) * var
