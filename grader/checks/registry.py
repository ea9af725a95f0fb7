"""One declaration per check (parent process).

A check is a function decorated with @check(id, ...): the decorator records what the rest of
the grader needs to know about it (is its verdict numeric, when it cannot run here and why in
both languages, which findings an advisory check may report, whether a crash on one input rank
may be retried on the other). The runner, scoring and the report read these records; nothing
else lists check ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Check:
    id: str
    fn: Callable
    # its outputs are compared with the reference: a static built-in-norm violation zeroes it
    numeric: bool = False
    # (predicate(cuda) -> bool "cannot run here", {"en": why, "zh": why}) or None
    needs: tuple | None = None
    # the finding codes an advisory check reports as a note; any other failure is "not assessed"
    findings: tuple = ()
    # the property is not about the input rank: a crash on (N, C, H, W) is retried on (N, C)
    any_rank: bool = False


CHECKS: dict[str, Check] = {}  # id -> Check, in the order they run


def check(check_id, numeric=False, needs=None, findings=(), any_rank=False):
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
    return why["en"] if cannot(cuda) else ""


def reason_translations() -> dict:
    return {c.needs[1]["en"]: c.needs[1]["zh"] for c in CHECKS.values() if c.needs}


def numeric_ids() -> set:
    return {c.id for c in CHECKS.values() if c.numeric}
