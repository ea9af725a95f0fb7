"""Crashes explained from evidence (parent process).

When the submission's code raises, the outcome shows the exception, the student's own line and
the shapes of the tensors that line could see (collected by the worker). A diagnosis is added
only when the exception itself says what happened or a probe confirms it: a fresh module on the
same input (state from an earlier call?), the other input rank (a layer for 4-D or 2-D only?),
an input with W == C (a (C,) tensor that broadcasts along W?), replayed through the mistake search.
"""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.search import axes_from_state, diagnosis_for, search
from grader.checks.oracle import NotInPack
from grader.checks.worker import Failed, StudentError


def _fmt_shape(s):
    return "(" + ", ".join(str(n) for n in s) + ("," if len(s) == 1 else "") + ")"


def describe(e: StudentError) -> str:
    """The exception, the student's line and the tensors there, in plain words."""
    ev = e.evidence
    if not ev:
        return f"your code raised {e}" if e.exception else str(e)
    lines = [f"your code raised {ev['exception']}: {ev['message']}"]
    req = e.request
    if req.get("op") == "forward":
        lines.append(f"  during: forward in {req['mode']} mode" + (" and backward" if req.get("backward") else "")
                     + f" on an input of shape {_fmt_shape(req['shape'])}")
    for f in ev.get("frames", [])[-2:]:
        lines.append(f"  at {f['file']} line {f['line']} (in {f['function']}): {f['code']}")
    tensors = ev.get("tensors", {})
    if tensors:
        shown = ", ".join(f"{k} {_fmt_shape(v)}" for k, v in list(tensors.items())[:10])
        lines.append(f"  tensors there: {shown}")
    return "\n".join(lines)


def _line(e):
    frames = e.evidence.get("frames") or []
    return f" at line {frames[-1]['line']}" if frames else ""


def _from_message(e: StudentError):
    text = f"{e} {e.tb}"
    code_lines = " ".join(f.get("code", "") for f in e.evidence.get("frames", []))
    if "numpy()" in text or "np." in code_lines and "requires grad" in text:
        return [M.CATALOGUE["numpy_on_tensor"]], "the input requires grad, as it does inside a network"
    if "backward through the graph a second time" in text:
        return [M.CATALOGUE["stats_with_graph"]], ""
    if "same device" in text or ("cuda" in text.lower() and "cpu" in text.lower()):
        return [M.CATALOGUE["stats_wrong_device"]], ""
    return [], ""


def _try(ctx, fn):
    try:
        return fn()
    except (StudentError, Failed):
        return None


def _probe_inputs(ctx, C, nd, shape, with_affine):
    # (gamma, beta, x) of a probe: the same draws as before a module was built with them
    gen = I.generator(ctx.rubric.seed_for(ctx.check_id + "/probe"))
    g = b = None
    if with_affine:
        gamma, beta = I.make_affine(gen, C)
        g, b = I.shaped(gamma, nd), I.shaped(beta, nd)
    return g, b, I.make_x(gen, shape, torch.float32)


def _probe_forward(ctx, C, nd, shape, mode, with_affine):
    g, b, x = _probe_inputs(ctx, C, nd, shape, with_affine)
    handle, _ = ctx.build(C, nd)
    if with_affine:
        ctx.set(handle, gamma=g, beta=b)
    resp = ctx.forward(handle, x, mode=mode, grad=mode == "train", check_output=False)
    return x, g, b, resp


def _fresh_state(ctx, x):
    # the oracle's one-step moving_mean over each set of axes, for a fresh module's state
    return ctx.simulator("state_mean", f"probe/first/{tuple(x.shape)}", x=x.double(), momentum=0.9)


def _square(ctx, x, g, b, mode):
    """(expected, kind, simulate) of the W == C probe: a fresh module's output in this mode."""
    x64 = x.double()
    label = f"probe/square/{mode}/{tuple(x.shape)}"
    if mode == "train":
        inputs = dict(x=x64, gamma=g, beta=b, eps=1e-5)
        return ctx.expect("expected.train", label, **inputs), "train", ctx.simulator("train", label, **inputs)
    # a fresh module's running statistics: zeros and ones
    zero, one = torch.zeros_like(g, dtype=torch.float64), torch.ones_like(g, dtype=torch.float64)
    stats = dict(x=x64, gamma=g, beta=b, mean=zero, var=one, eps=1e-5)
    return ctx.expect("expected.eval", label, **stats), "eval", ctx.simulator("eval", label, **stats, momentum=0.9)


def prepare(ctx, shape, mode):
    """Ask the oracle every question a crash of this check on a forward of this shape and mode
    could lead to (a check pack is made this way: grader/packmaker.py)."""
    shape = tuple(shape)
    nd, C = len(shape), shape[1]
    if mode == "train":
        _fresh_state(ctx, _probe_inputs(ctx, C, nd, shape, False)[2])
    if nd == 4 and shape[3] != C:
        sq = (shape[0], C, shape[2], C)
        g, b, x = _probe_inputs(ctx, C, 4, sq, True)
        _square(ctx, x, g, b, mode)


def explain(ctx, e: StudentError):
    """(message, diagnoses) for a crash in the current check."""
    msg = describe(e)
    diags, why = _from_message(e)
    if why:
        msg += f"\n  ({why})"
    req = e.request
    if diags or req.get("op") != "forward" or not req.get("shape"):
        return msg, diags
    shape, mode, nd = tuple(req["shape"]), req["mode"], len(req["shape"])
    C = shape[1]
    key = (nd, mode, C, shape, e.evidence.get("message", "")[:200])
    cache = ctx.crash_probes
    if key not in cache:
        try:
            cache[key] = _probe(ctx, e, shape, mode, nd, C)
        except NotInPack:
            cache[key] = ("", [])  # a pack without this probe's answers: the crash is shown undiagnosed
    note, found = cache[key]
    if note:
        msg += "\n  probe: " + note
    return msg, found


def _probe(ctx, e, shape, mode, nd, C):
    fresh = _try(ctx, lambda: _probe_forward(ctx, C, nd, shape, mode, False))
    if fresh is not None:
        # a fresh module takes this input: the crash needs state left by an earlier call
        x, _, _, resp = fresh
        r = resp["structure"]["roles"]["moving_mean"]
        v = r.get("value") if r.get("name") else None
        found = axes_from_state(v, nd, _fresh_state(ctx, x), ctx.tol(torch.float32)) \
            if v is not None and v.numel() != C and mode == "train" else None
        if found:
            code, fields = found
            return (f"a fresh module takes this input, but after one batch self.{r['name']} has shape "
                    f"{_fmt_shape(v.shape)}: the batch mean was taken over dims {fields['axes']}, so an input of "
                    "another size no longer fits", [diagnosis_for(code, fields, nd)])
        return "a fresh module takes this input: the crash depends on what earlier calls left in the module", []
    if nd == 4 and shape[3] != C:
        # does it run when W == C? Then a (C,) tensor is lined up with W: the search says which
        sq = (shape[0], C, shape[2], C)
        got = _try(ctx, lambda: _probe_forward(ctx, C, 4, sq, mode, True))
        if got is not None:
            x, g, b, resp = got
            expected, kind, sim = _square(ctx, x, g, b, mode)
            found = search(kind, sim, resp["y"].reshape(x.shape), expected, ctx.tol(torch.float32), 4)
            if found:
                return (f"it runs when W == C (input {_fmt_shape(sq)}), where its output matches: "
                        + "; ".join(d.title["en"] for d in found), found)
            return f"it runs when W == C (input {_fmt_shape(sq)}): a (C,)-shaped tensor is lined up with W", []
    other = 2 if nd == 4 else 4
    other_shape = (4, C) if other == 2 else (2, C, 3, C + 2)
    if _try(ctx, lambda: _probe_forward(ctx, C, other, other_shape, mode, False)) is not None:
        rank = "(N, C)" if nd == 2 else "(N, C, H, W)"
        works = "4-D" if other == 4 else "2-D"
        return (f"your forward handles {works} input but fails on {rank} input{_line(e)}",
                [M.CATALOGUE["only_4d" if other == 4 else "only_2d"]])
    return "", []
