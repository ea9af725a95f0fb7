"""One declaration per check (parent process).

A check is a function decorated with @check(id, ...): the decorator records what the rest of
the grader needs to know about it (is its verdict numeric, when it cannot run here and why in
both languages, which findings an advisory check may report, whether a crash on one input rank
may be retried on the other). The runner and grading.py read these records (scoring gets what it
needs from them as arguments, and the words of a reason come from output/i18n.py's SKIPPED);
nothing else lists check ids. Imports no torch: the checks that import it register on import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from grader.output.i18n import SKIPPED


@dataclass(frozen=True)
class Check:
    id: str
    fn: Callable
    # its outputs are compared with the reference: a static built-in-norm violation zeroes it
    numeric: bool = False
    # (predicate(cuda) -> bool "cannot run here", why: an i18n.SKIPPED code) or None
    needs: tuple | None = None
    # the finding codes an advisory check reports as a note; any other failure is "not assessed"
    findings: tuple = ()
    # the property is not about the input rank: a crash on (N, C, H, W) is retried on (N, C)
    any_rank: bool = False


CHECKS: dict[str, Check] = {}  # id -> Check, in the order they run
# decided from what every other check saw (runner.py); what it finds zeroes others (scoring.py)
BUILTIN = "originality.no_builtin_norm"


def check(check_id, numeric=False, needs=None, findings=(), any_rank=False):
    if needs is not None and needs[1] not in SKIPPED:
        raise ValueError(f"{check_id}: needs names {needs[1]!r}, which is not an i18n.SKIPPED code")

    def register(fn):
        CHECKS[check_id] = Check(check_id, fn, numeric, needs, tuple(findings), any_rank)
        return fn
    return register


def not_applicable(check_id, cuda: bool) -> str:
    """Why a check cannot run on this machine ('' when it can): it then counts nowhere."""
    c = CHECKS.get(check_id)
    if c is None or c.needs is None:
        return ""
    cannot, why = c.needs
    return SKIPPED[why]["en"] if cannot(cuda) else ""


def numeric_ids() -> set:
    return {c.id for c in CHECKS.values() if c.numeric}
