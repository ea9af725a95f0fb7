"""Checks of what __init__ builds: parameters and running statistics (parent process)."""
from __future__ import annotations

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.compare import fmt
from grader.checks.registry import check
from grader.checks.worker import Failed
from grader.results import CheckOutcome
from grader.sandbox.inside.wire import ROLE_NAMES


def _structure(ctx, num_dims):
    C = I.num_channels(ctx.gen())
    _, s = ctx.build(C, num_dims)
    want = (1, C) if num_dims == 2 else (1, C, 1, 1)
    problems, diags, notes = [], [], []

    def problem(text, code=None):
        # every problem is listed: one hiding behind another costs a second submission
        problems.append(text)
        if code and M.CATALOGUE[code] not in diags:
            diags.append(M.CATALOGUE[code])

    for role, init in (("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0), ("moving_var", 1.0)):
        r = s["roles"][role]
        param = role in ("gamma", "beta")
        if r["name"] is None:
            if r.get("none_attr"):
                problem(f"self.{r['none_attr']} starts as None (the template starts it at {init:g})", "wrong_init")
            else:
                problem(f"no attribute {role} (looked for {', '.join('self.' + n for n in ROLE_NAMES[role])})")
            continue
        v = r["value"]
        if param and not (r["is_parameter"] and r["in_parameters"]):
            problem(f"self.{r['name']} is a plain tensor, not an nn.Parameter registered on the module",
                    "params_not_parameters")
        if v.numel() != C or (param and tuple(v.shape) != want):
            problem(f"self.{r['name']} has shape {tuple(v.shape)}, expected {want}", "wrong_param_shape")
        elif tuple(v.shape) != want:
            notes.append(f"self.{r['name']} has shape {tuple(v.shape)}; the template uses {want}")
        if v.numel() and not bool((v == init).all()):
            problem(f"self.{r['name']} does not start at {init:g}: {fmt(v)}", "wrong_init")
        if param and r["name"] != role:
            notes.append(f"{role} found as self.{r['name']} (the template calls it {role})")
    if problems:
        raise Failed(f"BatchNorm2d({C}, {num_dims}): " + "; ".join(problems),
                     expected=f"gamma, beta: nn.Parameter {want} of ones, zeros; moving_mean, moving_var: {want} of "
                     "zeros, ones", got="; ".join(problems), diagnoses=diags)
    return CheckOutcome(ctx.check_id, True, f"BatchNorm2d({C}, {num_dims}) has gamma, beta, moving_mean, moving_var "
                        f"of shape {want} with the template's initial values", notes=notes)


@check("structure.4d")
def structure_4d(ctx):
    return _structure(ctx, 4)


@check("structure.2d")
def structure_2d(ctx):
    return _structure(ctx, 2)
