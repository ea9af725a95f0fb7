"""Checks of eval mode: the output, frozen statistics, and the train/eval switch (parent process)."""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.compare import close, fmt
from grader.checks.registry import check
from grader.checks.running import stat
from grader.checks.search import mismatch
from grader.checks.worker import Failed
from grader.results import CheckOutcome

EVAL_IGNORED = ("batch_stats_in_eval", "running_updated_in_eval")


def _training_argument(structure):
    # forward(self, X, training=True): model(x) never passes it, so its default beats model.eval()
    return next((p for p in structure.get("forward_params", []) if "train" in p.lower()), None)


def blame_argument(f: Failed, structure):
    arg = _training_argument(structure)
    if arg and any(d.code in EVAL_IGNORED for d in f.diagnoses):
        f.diagnoses.insert(0, M.CATALOGUE["training_argument"])
        f.diagnosis = f.diagnoses[0]
        f.args = (f"{f.args[0]}\nforward has a parameter '{arg}': model(x) never passes it, so its default "
                  "decides in eval mode too",)
    return f


@check("eval.forward", numeric=True)
def eval_output(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    tol = ctx.tol(torch.float32)
    for num_dims, shape in ((4, (2, C, 3, C + 2)), (2, (4, C))):
        gamma, beta = I.make_affine(gen, C)
        bmean, bvar = I.channel_stats(gen, C)
        rmean, rvar = I.make_running(gen, bmean, bvar)
        g, b = I.shaped(gamma, num_dims), I.shaped(beta, num_dims)
        rm, rv = I.shaped(rmean, num_dims), I.shaped(rvar, num_dims)
        handle, structure = ctx.build(C, num_dims)
        ctx.set(handle, gamma=g, beta=b, moving_mean=rm.float(), moving_var=rv.float())
        x = I.make_x(gen, shape, torch.float32, bmean, bvar)
        y = ctx.forward(handle, x, mode="eval", grad=False)["y"]
        x64 = x.double()
        rm32, rv32 = rm.float().double(), rv.float().double()
        stats = dict(x=x64, gamma=g, beta=b, mean=rm32, var=rv32, eps=1e-5)
        expected = ctx.expect("expected.eval", f"eval/{shape}", **stats)
        try:
            mismatch("eval-mode output (model.eval(), torch.no_grad())", y, expected, tol, kind="eval", rank=num_dims,
                     simulate=ctx.simulator("eval", f"eval/{shape}", **stats, momentum=0.9),
                     shape_note=f" for input {shape}")
        except Failed as f:
            raise blame_argument(f, structure) from None
    return CheckOutcome(ctx.check_id, True, "eval-mode output uses moving_mean and moving_var (4-D and 2-D)")


@check("eval.frozen", any_rank=True)
def eval_frozen(ctx, nd=4):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, structure = ctx.build(C, nd)
    shape = (2, C, 3, C + 2) if nd == 4 else (4, C)
    x = I.make_x(gen, shape)
    before = ctx.forward(handle, x, check_output=False)["structure"]
    first = (ctx.simulator("state_mean", f"first/{shape}", x=x.double(), momentum=0.9), ctx.tol(torch.float32))
    b_mean, b_var = stat(before, "moving_mean", C, shape, first), stat(before, "moving_var", C, shape, first)
    # the course evaluates with model.eval() under torch.no_grad(); with grad enabled too only
    # where the rubric makes a switch on grad mode alone cost points
    modes = [(False, "under torch.no_grad()")]
    if ctx.rubric.grad_mode_only == "costs":
        modes.append((True, "with grad enabled"))
    for grad, how in modes:
        after = ctx.forward(handle, I.make_x(gen, shape), mode="eval", grad=grad, check_output=False)["structure"]
        a_mean, a_var = stat(after, "moving_mean", C, shape), stat(after, "moving_var", C, shape)
        if not (torch.equal(a_mean, b_mean) and torch.equal(a_var, b_var)):
            f = Failed(f"an eval-mode forward ({how}) changed moving_mean/moving_var",
                       expected=f"{fmt(b_mean)} / {fmt(b_var)}", got=f"{fmt(a_mean)} / {fmt(a_var)}",
                       diagnosis=M.CATALOGUE["running_updated_in_eval"])
            raise blame_argument(f, structure)
    what = "with and without torch.no_grad()" if len(modes) == 2 else "under torch.no_grad()"
    return CheckOutcome(ctx.check_id, True, f"eval-mode forwards leave moving_mean and moving_var unchanged ({what})")


@check("advice.grad_mode", findings=("ignores_training_flag", "eval_updates_with_grad"))
def grad_mode(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    gamma, beta = I.make_affine(gen, C)
    bmean, bvar = I.channel_stats(gen, C)
    rmean, rvar = I.make_running(gen, bmean, bvar)
    g, b, rm, rv = (I.shaped(t, 4) for t in (gamma, beta, rmean, rvar))
    tol = ctx.tol(torch.float32)
    x = I.make_x(gen, (2, C, 3, C + 2), torch.float32, bmean, bvar)
    x64 = x.double()
    with_running = ctx.expect("expected.eval", "running", x=x64, mean=rm.float().double(), var=rv.float().double(),
                              gamma=g, beta=b, eps=1e-5)
    with_batch = ctx.expect("expected.train", "batch", x=x64, gamma=g, beta=b, eps=1e-5)
    notes = []
    handle, _ = ctx.build(C, 4)
    ctx.set(handle, gamma=g, beta=b, moving_mean=rm.float(), moving_var=rv.float())
    if not close(ctx.forward(handle, x, mode="eval", grad=False)["y"], with_running, tol.rtol, tol.atol):
        return CheckOutcome(ctx.check_id, True, "not assessed: model.eval() under torch.no_grad() does not use the "
                            "running statistics (see eval.forward)")
    resp = ctx.forward(handle, x, mode="eval", grad=True)
    s = resp["structure"]
    moved = any(not torch.equal(s["roles"][r]["value"].reshape(-1).double(), t.float().double().reshape(-1))
                for r, t in (("moving_mean", rm), ("moving_var", rv)) if s["roles"][r].get("name"))
    finding = None
    if close(resp["y"], with_batch, tol.rtol, tol.atol):
        finding = M.CATALOGUE["ignores_training_flag"]
    elif moved:
        finding = M.CATALOGUE["eval_updates_with_grad"]
    handle, _ = ctx.build(C, 4)
    ctx.set(handle, gamma=g, beta=b, moving_mean=rm.float(), moving_var=rv.float())
    y = ctx.forward(handle, x, mode="train", grad=False)["y"]
    if close(y, with_running, tol.rtol, tol.atol):
        notes.append(M.CATALOGUE["grad_mode_switching"].hint["en"])
    if finding is not None:
        what = "used batch statistics" if finding.code == "ignores_training_flag" else "updated the running statistics"
        return CheckOutcome(ctx.check_id, False, f"under model.eval() with grad enabled the layer {what}; under "
                            "torch.no_grad(), as graded, it is right", diagnosis=finding, notes=notes)
    return CheckOutcome(ctx.check_id, True, "model.eval() switches to the running statistics with or without no_grad",
                        notes=notes)
