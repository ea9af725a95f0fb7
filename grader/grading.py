"""One submission through the pipeline (parent process):
read and scan the file -> sandboxed worker -> checks -> scoring -> GradeResult.

Whatever the submission does, this returns a GradeResult: a submission that cannot be
loaded, crashes or hangs is graded zero with the reason.
"""
from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path

import torch

import grader
from grader import scoring
from grader.checks import battery
from grader.checks.battery import Context
from grader.checks.static import scan
from grader.results import CheckOutcome, GradeResult, RunFacts, RunStatus
from grader.sandbox.zygote import SandboxError, Zygote


def run_facts(rubric, cuda: bool) -> RunFacts:
    return RunFacts(seed=rubric.seed, torch_version=torch.__version__, device="cuda" if cuda else "cpu",
                    rubric_path=rubric.path, rubric_hash=rubric.sha256, grader_version=grader.__version__,
                    python=platform.python_version())


def check_ids(rubric) -> list[str]:
    return [c.id for c in rubric.checks]


class _LoadFailed(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def grade_file(path: str | Path, rubric, zygote: Zygote, cuda: bool | None = None) -> GradeResult:
    t0 = time.monotonic()
    path = Path(path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    findings = scan(raw.decode("utf-8", "replace"))
    if cuda is None:
        cuda = torch.cuda.is_available()  # safe here: the zygote was forked before
    facts = run_facts(rubric, cuda)
    ids = check_ids(rubric)
    sessions = []

    def open_session():
        try:
            s = zygote.spawn(str(path), rubric.limits)
        except SandboxError as e:
            raise _LoadFailed(RunStatus.TIMEOUT if e.kind == "timeout" else RunStatus.ERROR, str(e)) from None
        sessions.append(s)
        if not s.loaded.get("ok"):
            tb = s.loaded.get("traceback", "").strip()
            raise _LoadFailed(RunStatus.ERROR, s.loaded.get("error", "the submission could not be loaded")
                              + (f"\n{tb}" if tb else ""))
        return s

    ctx = Context(rubric, open_session, findings, cuda)
    status, reason = RunStatus.GRADED, ""
    try:
        try:
            ctx.start()
            deadline = sessions[0].started + rubric.limits.total_seconds
            outcomes = battery.run(ctx, ids, deadline)
        except _LoadFailed as e:
            status, reason = e.status, e.reason
            outcomes = [CheckOutcome(cid, None, skipped=battery.not_applicable(cid, cuda))
                        if battery.not_applicable(cid, cuda)
                        else CheckOutcome(cid, False, f"not run: {e.reason.splitlines()[0]}") for cid in ids]
    finally:
        output = "".join(s.close(rubric.limits.output_bytes) for s in sessions)
    static_violation = any(f.in_class for f in findings)
    scored, not_run, total, maximum = scoring.score(outcomes, rubric, static_violation)
    flags = []
    if any(not s.passed and s.outcome.check_id == scoring.BUILTIN for s in scored):
        flags.append("builtin_norm")
    timeouts = [o for o in outcomes if "took longer than" in o.message]
    if status is RunStatus.GRADED and timeouts:
        flags.append("timeout")
    return GradeResult(submission=str(path), submission_hash=digest, status=status, reason=reason, checks=scored,
                       score=total, max_score=maximum, facts=facts, seconds=round(time.monotonic() - t0, 3),
                       student_output=output, not_run=not_run, flags=flags)
