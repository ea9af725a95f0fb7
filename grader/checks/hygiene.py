"""Checks of side effects: the input tensor, and graphs kept in the running statistics (parent process)."""
from __future__ import annotations

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.registry import check
from grader.checks.worker import Failed
from grader.results import CheckOutcome


def _shape(C, nd):
    return (2, C, 3, C + 2) if nd == 4 else (4, C)


@check("hygiene.input_unchanged", any_rank=True)
def input_unchanged(ctx, nd=4):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, _ = ctx.build(C, nd)
    for mode in ("train", "eval"):
        x = I.make_x(gen, _shape(C, nd))
        if ctx.forward(handle, x, mode=mode, check_output=False)["input_modified"]:
            raise Failed(f"forward in {mode} mode changed its input tensor", expected="input unchanged",
                         got="input modified in place", diagnosis=M.CATALOGUE["inplace_input"])
    return CheckOutcome(ctx.check_id, True, "the input tensor is left unchanged in train and eval mode")


@check("hygiene.stats_detached", any_rank=True)
def stats_detached(ctx, nd=4):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, _ = ctx.build(C, nd)
    shape = _shape(C, nd)
    for _ in range(2):
        s = ctx.forward(handle, I.make_x(gen, shape), weights=I.make_weights(gen, shape).float(),
                        check_output=False)["structure"]
    for role in ("moving_mean", "moving_var"):
        r = s["roles"][role]
        if r.get("name") and (r["has_graph"] or r["requires_grad"]):
            raise Failed(f"self.{r['name']} carries an autograd graph after a training step",
                         expected="requires_grad=False, grad_fn=None", got=f"requires_grad={r['requires_grad']}",
                         diagnosis=M.CATALOGUE["stats_with_graph"])
    return CheckOutcome(ctx.check_id, True, "running statistics carry no autograd graph after training steps")
