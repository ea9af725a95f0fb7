"""Checks of the running statistics and of the momentum argument (parent process)."""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.compare import close
from grader.checks.registry import check
from grader.checks.search import axes_from_state, diagnosis_for, mismatch
from grader.checks.worker import Failed, StudentError
from grader.results import CheckOutcome
from grader.sandbox.inside.wire import ROLE_NAMES


def stat(structure, role, C, x_shape, first=None):
    """The (C,) float64 value of a running statistic after a training step on x_shape.
    first: (simulate, tol) when this was a fresh module's first step, to tell from a wrongly shaped
    moving_mean over which axes the batch statistics were taken (simulate: the oracle's
    "state_mean" for that step's input)."""
    r = structure["roles"][role]
    if r.get("name") is None:
        raise Failed(f"the module has no {role} (looked for {', '.join(ROLE_NAMES[role])})")
    v = r["value"]
    if v.numel() != C:
        diags, how = [], ""
        found = axes_from_state(v, len(x_shape), *first) if first is not None and role == "moving_mean" else None
        if found:
            code, fields = found
            diags = [diagnosis_for(code, fields, len(x_shape))]
            how = f": the batch mean was taken over dims {fields['axes']} (kept as {tuple(v.shape)})"
        raise Failed(f"after a training step on input {tuple(x_shape)} self.{r['name']} has shape "
                     f"{tuple(v.shape)}{how}; expected {C} values, one per channel", expected=f"{C} values",
                     got=str(tuple(v.shape)), diagnoses=diags)
    return v.reshape(C).to(torch.float64)


def running(ctx, num_dims, steps, momentum=None):
    gen = ctx.gen(f"/{num_dims}")
    C = I.num_channels(gen)
    kwargs = {} if momentum is None else {"momentum": momentum}
    m = 0.9 if momentum is None else momentum
    handle, _ = ctx.build(C, num_dims, **kwargs)
    shape = (2, C, 3, C + 2) if num_dims == 4 else (4, C)
    accepted = ["biased", "unbiased"] if ctx.rubric.running_var == "either" else [ctx.rubric.running_var]
    tol = ctx.tol(torch.float32)
    # every step's input drawn first (the same draws as one per step): the oracle replays all the
    # steps, and a submission that crashes at step k is judged on the first k - 1 of them
    xs = [I.make_x(gen, shape, torch.float32) for _ in range(steps)]
    xs64 = [x.double() for x in xs]
    label = f"{num_dims}d/m={m:g}"
    replays = ctx.simulator("running", label, xs=xs64, momentum=m)
    first = (ctx.simulator("state_mean", f"first/{shape}", x=xs64[0], momentum=m), tol)
    # every step first, then the comparison: a mistake that shows only from the second step on
    # (statistics set from the first batch, then averaged) is told apart from its look-alikes
    got = []
    for step, x in enumerate(xs, start=1):
        try:
            s = ctx.forward(handle, x, check_output=False)["structure"]
        except StudentError:
            if step == 1:
                raise
            break  # judged on the steps it took; a later crash fails the check below
        f = first if step == 1 else None
        got.append((stat(s, "moving_mean", C, shape, f), stat(s, "moving_var", C, shape, f)))

    def replay(v, answer=None):
        # (means, vars) of the steps taken, (len(got), C) each
        out = replays(v) if answer is None else answer
        return None if out is None else (out[0][:len(got)], out[1][:len(got)])
    want = {k: replay(None, ctx.expect("running", label, M.Variant(running_var=k), xs=xs64, momentum=m))
            for k in accepted}
    got_mean = torch.stack([g[0] for g in got])
    got_var = torch.stack([g[1] for g in got])
    exp_mean = want[accepted[0]][0]
    for step in range(len(got)):
        where = f"after training step {step + 1} of {len(got)} (momentum={m:g}, input {shape})"
        if not close(got_mean[step], exp_mean[step], tol.rtol, tol.atol):
            mismatch(f"moving_mean {where}", got_mean, exp_mean, tol, channel_dim=None, kind="running_mean",
                     rank=num_dims, simulate=lambda v: (replay(v) or (None,))[0])
        if not any(close(got_var[step], want[k][1][step], tol.rtol, tol.atol) for k in accepted):
            mismatch(f"moving_var {where} (accepted: {' or '.join(accepted)} batch variance)", got_var,
                     want[accepted[0]][1], tol, channel_dim=None, kind="running_var", rank=num_dims,
                     simulate=lambda v: (replay(v) or (None, None))[1], accepted_var=tuple(accepted),
                     bases=[M.Variant(running_var=k) for k in accepted])
    found = [k for k in accepted if close(got_var, want[k][1], tol.rtol, tol.atol)]
    if len(got) < steps:
        raise Failed(f"training step {len(got) + 1} raised after {len(got)} correct step(s)")
    return found[0] if found else "mixed"


@check("running_stats")
def running_stats(ctx):
    kinds = {running(ctx, 4, 3), running(ctx, 2, 3)}
    src = {"biased": "biased, as in the slides", "unbiased": "unbiased, as torch.nn keeps it",
           "mixed": "biased at some steps, unbiased at others"}
    note = "running variance found: " + "; ".join(src[k] for k in sorted(kinds))
    return CheckOutcome(ctx.check_id, True, "moving_mean and moving_var follow moving = m·moving + (1 − m)·batch "
                        "over 3 steps, for 4-D and 2-D inputs", notes=[note])


@check("hyperparams.momentum", any_rank=True)
def hyperparams_momentum(ctx, nd=4):
    running(ctx, nd, 2, momentum=0.7)
    return CheckOutcome(ctx.check_id, True, "momentum=0.7 is used in the running-statistics update")
