"""Checks of the training-mode output and of the eps argument (parent process)."""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks.evaluation import blame_argument
from grader.checks.registry import check
from grader.checks.search import mismatch
from grader.checks.worker import Failed
from grader.results import CheckOutcome


def shapes4(C):
    # W != C, and W == C: a (C,) statistic broadcasts silently only in the second
    return [(2, C, 3, C + 2), (3, C, 2, C)]


def train_output(ctx, num_dims, eps=None):
    gen = ctx.gen()
    C = I.num_channels(gen)
    kwargs = {} if eps is None else {"eps": eps}
    handle, g, b = ctx.affine_module(gen, C, num_dims, **kwargs)
    e = 1e-5 if eps is None else eps
    shapes = shapes4(C) if num_dims == 4 else [(2, C), (5, C)]
    tol = ctx.tol(torch.float32)
    for shape in shapes:
        x = I.make_x(gen, shape, torch.float32)
        y = ctx.forward(handle, x)["y"]
        x64 = x.double()
        inputs = dict(x=x64, gamma=g, beta=b, eps=e)
        expected = ctx.expect("expected.train", f"train/{shape}", **inputs)
        mismatch("train-mode output", y, expected, tol, kind="train", rank=num_dims,
                 simulate=ctx.simulator("train", f"train/{shape}", **inputs), shape_note=f" for input {shape}")
    what = f"eps={eps:g}: " if eps is not None else ""
    return CheckOutcome(ctx.check_id, True, f"{what}train-mode output matches the reference for inputs "
                        f"{', '.join(str(s) for s in shapes)} (float32)")


@check("forward.train.4d", numeric=True)
def forward_train_4d(ctx):
    return train_output(ctx, 4)


@check("forward.train.2d", numeric=True)
def forward_train_2d(ctx):
    return train_output(ctx, 2)


@check("hyperparams.eps", numeric=True, any_rank=True)
def hyperparams_eps(ctx, nd=4):
    out = train_output(ctx, nd, eps=0.1)
    # and in eval mode, where a hard-coded eps hides from the training-mode checks
    gen = ctx.gen("/eval")
    C = I.num_channels(gen)
    bmean, bvar = I.channel_stats(gen, C)
    rmean, rvar = I.make_running(gen, bmean, bvar)
    rv = I.shaped(rvar, nd).float()
    rm = I.shaped(rmean, nd).float()
    handle, g, b = ctx.affine_module(gen, C, nd, eps=0.1)
    ctx.set(handle, moving_mean=rm, moving_var=rv)
    x = I.make_x(gen, (2, C, 3, C + 2) if nd == 4 else (4, C), torch.float32, bmean, bvar)
    y = ctx.forward(handle, x, mode="eval", grad=False)["y"]
    x64 = x.double()
    structure = ctx.last_structure
    label = f"eval/{tuple(x.shape)}"
    stats = dict(x=x64, gamma=g, beta=b, mean=rm.double(), var=rv.double(), eps=0.1)
    try:
        mismatch("eps=0.1: eval-mode output", y, ctx.expect("expected.eval", label, **stats),
                 ctx.tol(torch.float32), kind="eval", rank=nd,
                 simulate=ctx.simulator("eval", label, **stats, momentum=0.9))
    except Failed as f:
        raise blame_argument(f, structure) from None
    out.message = out.message.replace("train-mode output matches", "train- and eval-mode outputs match")
    return out
