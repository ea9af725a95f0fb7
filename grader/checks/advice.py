"""Advisory checks: notes about working but fragile code, never points (parent process)."""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.compare import compare
from grader.checks.registry import check
from grader.results import CheckOutcome


@check("advice.stable_variance", findings=("fragile_variance",))
def stable_variance(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, g, b = ctx.affine_module(gen, C, 4)
    shape = (4, C, 4, C + 2)
    mean = I.signs(gen, C) * 0.5
    var = torch.full((C,), 1.0, dtype=torch.float64)
    tol = ctx.tol(torch.float32)
    base = I.make_x(gen, shape, torch.float64, mean, var)
    # the same spread, far from zero: E[x²] − E[x]² then subtracts two numbers near 1e6
    results = []
    for offset in (0.0, 1000.0):
        x = (base + offset).float()
        y = ctx.forward(handle, x)["y"]
        expected = ctx.expect("expected.train", f"offset={offset:g}", x=x.double(), gamma=g, beta=b, eps=1e-5)
        results.append(compare(y, expected, tol.rtol, tol.atol)[1])
    near, far = results
    # x itself is quantised to ~6e-5 at 1000 in float32, so even a two-pass variance is off by
    # ~1e-4 there; E[x²] − E[x]² loses the variance entirely (errors of 1e-2 and far more)
    fragile = far.max_abs > 1e-2
    if near.mismatched:
        return CheckOutcome(ctx.check_id, True, "not assessed: the output is off even for inputs near zero "
                            "(see the forward checks)")
    if fragile:
        return CheckOutcome(ctx.check_id, False, f"with channel means near 1000 (float32) the output is off by up to "
                            f"{far.max_abs:.3g}; near zero it is exact", metrics=far,
                            diagnosis=M.CATALOGUE["fragile_variance"])
    return CheckOutcome(ctx.check_id, True, "the variance stays accurate for channel means near 1000 (float32)")


@check("advice.buffers", findings=("not_buffers",))
def buffers(ctx):
    _, s = ctx.build(3, 4)
    plain = [s["roles"][r]["name"] for r in ("moving_mean", "moving_var")
             if s["roles"][r].get("name") and not s["roles"][r]["is_buffer"]]
    if plain:
        return CheckOutcome(ctx.check_id, False, f"{', '.join('self.' + p for p in plain)} are plain tensors, not "
                            "buffers", diagnosis=M.CATALOGUE["not_buffers"])
    return CheckOutcome(ctx.check_id, True, "moving statistics are registered buffers")
