"""The integration check: the student's layer inside LeNet-5 for a few SGD steps (parent process)."""
from __future__ import annotations

import torch

from grader.checks import mistakes as M
from grader.checks.compare import close, compare, fmt
from grader.checks.registry import check
from grader.checks.search import mismatch
from grader.checks.worker import Failed
from grader.results import CheckOutcome
from grader.rubric import Tolerance
from grader.training import lenet  # the harness only (LeNet-5's initial weights); both editions ship it

INTEGRATION_STEPS = 3
INTEGRATION_LR = 0.5  # large, so a parameter the optimiser misses is visibly left behind
INTEGRATION_TOL = (1e-4, 1e-5)  # rtol, atol: float32 through a whole network and three updates


@check("integration.lenet")
def integration_lenet(ctx):
    gen = ctx.gen()
    with torch.random.fork_rng():
        torch.manual_seed(ctx.rubric.seed_for(ctx.check_id))
        init = lenet.LeNet5().weight_state()
    xs = [torch.randn((8, 3, 32, 32), generator=gen) for _ in range(INTEGRATION_STEPS)]
    ys = [torch.randint(0, 10, (8,), generator=gen) for _ in range(INTEGRATION_STEPS)]
    x_eval = torch.randn((8, 3, 32, 32), generator=gen)
    activation = ctx.rubric.training.activation
    resp = ctx.call({"op": "lenet_steps", "init": init, "xs": xs, "ys": ys, "x_eval": x_eval, "lr": INTEGRATION_LR,
                     "activation": activation}, f"{INTEGRATION_STEPS} SGD steps of LeNet-5 with your BatchNorm2d")
    rtol, atol = INTEGRATION_TOL
    accepted = {"either": ("biased", "unbiased"), "biased": ("biased",), "unbiased": ("unbiased",)}[ctx.rubric.running_var]
    # the reference LeNet-5's trajectory for each accepted running variance (the oracle's "lenet")
    inputs = dict(init=init, xs=xs, ys=ys, x_eval=x_eval, activation=activation, lr=INTEGRATION_LR)
    refs = [ctx.expect("lenet", "steps", kind, **inputs) for kind in accepted]
    losses, weights, logits = refs[0]
    got = resp["losses"]
    if not close(got[:1], losses[:1], rtol, atol):
        raise Failed("inside LeNet-5 the first training step's loss already differs from the reference: see the "
                     "forward checks", expected=fmt(losses), got=fmt(got))
    if not close(got, losses, rtol, atol):
        step = int(((got - losses).abs() > atol + rtol * losses.abs()).nonzero()[0]) + 1
        if not all(resp["registered"]):
            raise Failed(f"inside LeNet-5 the loss drifts from the reference at SGD step {step} of "
                         f"{INTEGRATION_STEPS}: model.parameters() does not hold gamma and beta, so the optimiser "
                         "never updates them", expected=fmt(losses), got=fmt(got),
                         diagnosis=M.CATALOGUE["params_not_parameters"])
        raise Failed(f"inside LeNet-5 the loss drifts from the reference at SGD step {step} of {INTEGRATION_STEPS}: "
                     "the gradients or updates differ (see the layer's own checks)", expected=fmt(losses),
                     got=fmt(got))
    for name, w in weights.items():
        mismatch(f"LeNet-5 {name} after {INTEGRATION_STEPS} SGD steps", resp["weights"][name], w,
                 Tolerance(rtol, atol), channel_dim=None)
    if not any(close(resp["eval_logits"], r[2], rtol, atol) for r in refs):
        ok, m = compare(resp["eval_logits"], logits, rtol, atol, channel_dim=None)
        raise Failed(f"inside LeNet-5, model.eval() outputs differ from the reference after training (max abs error "
                     f"{m.max_abs:.3g}): the running statistics or the eval switch inside a network", metrics=m,
                     expected=fmt(logits), got=fmt(resp["eval_logits"]))
    return CheckOutcome(ctx.check_id, True, f"LeNet-5 with your BatchNorm2d follows the reference for "
                        f"{INTEGRATION_STEPS} SGD steps (losses, weights) and in eval mode")
