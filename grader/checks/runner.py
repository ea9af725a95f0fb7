"""Runs the declared checks for one submission (parent process).

Each check runs apart: a crash, a timeout or a failure ends that check only, and the next one
gets a fresh worker if it needs one (a worker that cannot load the submission again fails that
check the same way; three lost workers in a row and the rest are not retried). A check declared any_rank whose 4-D path crashes is retried
on (N, C) input, so a layer broken for one rank loses only the checks about that rank. After
all checks, what one check cannot tell alone is settled from the others (gamma/beta missing in
one mode only), and the built-in normalisation check is decided from what every check saw.
"""
from __future__ import annotations

import time
import traceback

from grader.checks import (advice, device, evaluation, forward, gradients, hygiene,  # noqa: F401 (they declare)
                           integration, running, structure)
from grader.checks import crashes
from grader.checks import mistakes as M
from grader.checks.oracle import NotInPack
from grader.checks.registry import BUILTIN, CHECKS, check, not_applicable, numeric_ids  # noqa: F401
from grader.checks.worker import Context, Failed, StudentError  # noqa: F401
from grader.errors import LoadFailed, SandboxError
from grader.output.i18n import PACK_LEAD
from grader.results import CheckOutcome

TRAIN_OUTPUT = ("forward.train.4d", "forward.train.2d")


@check(BUILTIN)
def no_builtin_norm(ctx):
    # evaluated last, from what every other check recorded: see run()
    raise AssertionError("run() evaluates this check itself")


def _builtin_outcome(ctx, runtime_ops):
    violations = [f for f in ctx.static if f.in_class]
    notes = [f"line {f.line}: {f.text} is used outside BatchNorm2d (fine for testing)" for f in ctx.static if not f.in_class]
    if not violations and not runtime_ops:
        return CheckOutcome(BUILTIN, True, "no built-in normalisation used", notes=notes)
    parts = []
    if violations:
        parts.append("in the source: " + "; ".join(f"line {f.line}: {f.text}" for f in violations))
    if runtime_ops:
        parts.append("at run time: " + ", ".join(sorted(runtime_ops)))
    return CheckOutcome(BUILTIN, False, "torch's built-in normalisation is used — " + "; ".join(parts),
                        diagnosis=M.CATALOGUE["builtin_norm"], notes=notes)


def _attempt(ctx, decl, nd=None):
    try:
        out = decl.fn(ctx) if nd is None else decl.fn(ctx, nd)
    except Failed as f:
        out = CheckOutcome(decl.id, False, str(f), expected=f.expected, got=f.got, metrics=f.metrics,
                           diagnoses=f.diagnoses)
    except NotInPack as e:
        # the student edition's pack holds no answer here: said plainly, left out of the maximum
        return CheckOutcome(decl.id, None, skipped=f"{PACK_LEAD}{e}")
    except StudentError as e:
        msg, diags = crashes.explain(ctx, e)
        out = CheckOutcome(decl.id, False, msg, got=e.tb.strip(), diagnoses=diags)
        out.crashed_rank = len(e.request.get("shape") or ()) or e.request.get("num_dims")
    return out


# mistakes of the 4-D path alone: an any_rank check that meets one is judged on (N, C) input
RANK_CODES = {"wrong_axes", "wrong_axes_instance", "wrong_axes_batch", "wrong_axes_global", "wrong_axes_channels_last",
              "wrong_axes_dims", "no_keepdim", "affine_last_axis", "only_2d", "state_shape_from_input"}


def _run_one(ctx, decl):
    out = _attempt(ctx, decl)
    four_d_path = getattr(out, "crashed_rank", None) == 4 or any(d.code in RANK_CODES for d in out.diagnoses)
    if decl.any_rank and out.passed is False and four_d_path:
        # the property is not about the rank: judge it where the layer works
        retry = _attempt(ctx, decl, nd=2)
        if retry.passed or getattr(retry, "crashed_rank", None) is None:
            retry.notes = list(retry.notes) + ["checked with (N, C) input: your layer fails on (N, C, H, W) input "
                                               "(see the 4-D checks)"]
            return retry
    return out


def _refine(outcomes):
    # what one check cannot tell alone. gamma and beta missing in one mode only: each mode's check
    # sees them missing or not at all
    by = outcomes

    def codes(cid):
        o = by.get(cid)
        return [d.code for d in o.diagnoses] if o is not None and o.passed is False else []
    train_ignored = any("gamma_beta_ignored" in codes(c) for c in TRAIN_OUTPUT)
    eval_ok = by.get("eval.forward") is not None and by["eval.forward"].passed
    eval_ignored = "gamma_beta_ignored" in codes("eval.forward")
    train_ok = all(by.get(c) is not None and by[c].passed for c in TRAIN_OUTPUT)
    frozen_ok = by.get("eval.frozen") is not None and by["eval.frozen"].passed
    if frozen_ok:
        # the eval output of "update, then normalise" but the statistics stay as they were: blended
        for o in by.values():
            if o.passed is False and o.check_id != "eval.frozen" and \
                    any(d.code == "running_updated_in_eval" for d in o.diagnoses):
                o.diagnoses = [M.CATALOGUE["eval_blended"] if d.code == "running_updated_in_eval" else d
                               for d in o.diagnoses]
                o.diagnosis = o.diagnoses[0]
    swap = None
    if train_ignored and eval_ok:
        swap = M.CATALOGUE["affine_eval_only"]
    elif eval_ignored and train_ok:
        swap = M.CATALOGUE["affine_train_only"]
    if swap is None:
        return
    for o in by.values():
        if o.passed is False and any(d.code == "gamma_beta_ignored" for d in o.diagnoses):
            o.diagnoses = [swap if d.code == "gamma_beta_ignored" else d for d in o.diagnoses]
            o.diagnosis = o.diagnoses[0]


def run(ctx: Context, check_ids, deadline: float):
    """Outcomes in check_ids order. A crash or timeout fails that check only: the next check
    gets a fresh worker, until the submission's total time is spent."""
    outcomes = {}
    runtime_ops = set()
    lost = []  # sandbox failures in a row: a worker that hangs everywhere is not retried forever
    for cid in check_ids:
        if cid == BUILTIN:
            continue
        ctx.check_id, ctx.ops_this_check = cid, set()
        why = not_applicable(cid, ctx.cuda)
        if why:
            outcomes[cid] = CheckOutcome(cid, None, skipped=why)
            continue
        if time.monotonic() > deadline:
            outcomes[cid] = CheckOutcome(cid, False, "not run: the submission's total time was used up")
            continue
        if len(lost) >= 3:
            # a worker that hangs in every check is not retried for each of them
            outcomes[cid] = CheckOutcome(cid, False, f"not run: the submission's process failed in three checks in "
                                         f"a row ({lost[-1]})")
            continue
        try:
            if ctx.session is None or ctx.session.exit is not None:
                ctx.start()
            out = _run_one(ctx, CHECKS[cid])
        except SandboxError as e:
            out = CheckOutcome(cid, False, str(e))
            lost.append(str(e))
        except LoadFailed as e:
            # the worker started again after a crash could not load the submission this time (its
            # load timed out or ran out of memory): this check fails with that reason, as a lost worker
            out = CheckOutcome(cid, False, f"not run: the submission could not be loaded again: {e.message}",
                               got=e.traceback)
            lost.append(e.message)
        except Exception:
            # a grader bug must not cost the student: say so plainly
            out = CheckOutcome(cid, False, "internal grader error in this check:\n" + traceback.format_exc(limit=3))
        if ctx.session is not None and ctx.session.exit is None:
            lost = []
        out.builtin_ops = sorted(ctx.ops_this_check)
        runtime_ops |= ctx.ops_this_check
        outcomes[cid] = out
    if BUILTIN in check_ids:
        outcomes[BUILTIN] = _builtin_outcome(ctx, runtime_ops)
    _refine(outcomes)
    for cid, out in outcomes.items():
        spec = ctx.rubric.spec(cid)
        decl = CHECKS.get(cid)
        findings = decl.findings if decl else ()
        if spec is not None and spec.advisory and out.passed is False and \
                (out.diagnosis is None or out.diagnosis.code not in findings):
            # a note is a finding about working code; code that crashed, hung or failed a graded
            # property here (a dtype, a shape) has none: the graded checks say so
            outcomes[cid] = CheckOutcome(cid, True, "not assessed: " + (out.message.splitlines() or ["error"])[0])
    return [outcomes[c] for c in check_ids]
