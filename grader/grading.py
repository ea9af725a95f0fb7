"""One submission through the pipeline (parent process):
read and scan the file -> sandboxed worker -> checks -> scoring -> GradeResult.

Whatever the submission does, this returns a GradeResult: a submission that cannot be
loaded, crashes or hangs is graded zero with the reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import platform
import time
from pathlib import Path

import torch

import grader
from grader import intake, scoring, slicing
from grader.checks import runner
from grader.checks.worker import Context
from grader.checks.static import review as integrity_review, review_flags, scan
from grader.results import CheckOutcome, GradeResult, RunFacts, RunStatus
from grader.sandbox.zygote import SandboxError, Zygote
from grader.training.stage import CHECK_IDS

TRAINING_IDS = CHECK_IDS  # the training stage's checks, run apart from the unit checks


def run_facts(rubric, cuda: bool) -> RunFacts:
    return RunFacts(seed=rubric.seed, torch_version=torch.__version__, device="cuda" if cuda else "cpu",
                    rubric_path=rubric.path, rubric_hash=rubric.sha256, grader_version=grader.__version__,
                    python=platform.python_version(), rubric_name=rubric.name)


def known_checks() -> list[str]:
    """Every check id a rubric may name."""
    return list(runner.CHECKS) + list(TRAINING_IDS)


def check_ids(rubric) -> list[str]:
    """The rubric's unit checks, in its order (the training stage's checks run apart)."""
    return [c.id for c in rubric.checks if c.id not in TRAINING_IDS]


def training_ids(rubric) -> list[str]:
    return [c.id for c in rubric.checks if c.id in TRAINING_IDS]


class _LoadFailed(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _not_run(ids, reason, cuda):
    # every check of a submission that could not be loaded: zero, with the reason; checks this
    # machine cannot run stay out of the maximum as for everyone
    return [CheckOutcome(cid, None, skipped=runner.not_applicable(cid, cuda)) if runner.not_applicable(cid, cuda)
            else CheckOutcome(cid, False, f"not run: {reason.splitlines()[0]}") for cid in ids]


def not_gradable(label: str, rubric, reason: str, status=RunStatus.ERROR, stage=None, cuda: bool | None = None,
                 notes=(), digest: str = "") -> GradeResult:
    """The zero row of a submission that never reached the sandbox (an unreadable zip, no
    BatchNorm2d anywhere, a grader failure): same checks and maximum as everyone's."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    outcomes = _not_run(check_ids(rubric), reason, cuda)
    t_ids = training_ids(rubric)
    if stage is None:
        outcomes += [CheckOutcome(cid, None, skipped="training stage not run (--no-train)") for cid in t_ids]
    else:
        outcomes += [CheckOutcome(cid, False, f"not run: {reason.splitlines()[0]}") for cid in t_ids]
    scored, not_run, total, maximum = scoring.score(outcomes, rubric, False)
    return GradeResult(submission=label, submission_hash=digest, status=status, reason=reason, checks=scored,
                       score=total, max_score=maximum, facts=run_facts(rubric, cuda), seconds=0.0, not_run=not_run,
                       notes=list(notes), maximum=scoring.maximum(rubric, not_run))


def _located(o: CheckOutcome, line_map) -> CheckOutcome:
    # a notebook's errors name its cells: the lines of the .py written from it mean nothing to the student
    return dataclasses.replace(o, message=intake.locate(o.message, line_map), got=intake.locate(o.got, line_map),
                               notes=[intake.locate(n, line_map) if isinstance(n, str) else n for n in o.notes])


def grade_file(path: str | Path, rubric, zygote: Zygote, cuda: bool | None = None, stage=None, threads: int = 1,
               notes=(), line_map=None, text: str | None = None, oracle=None) -> GradeResult:
    """stage: a grader.training.stage.Stage, or None to leave the training checks out (--no-train).
    threads: torch threads of the sandboxed worker for the checks.
    line_map: a notebook's intake.LineMap, so that every error names its cell and line.
    text: the submission when it exists only in memory (a notebook's cells, grader/notebook.py);
    path then only names it, and nothing is written to disk.
    oracle: where expected values come from (checks/oracle.py): None computes them (full edition),
    a PackOracle reads them from a check pack (student edition)."""
    t0 = time.monotonic()
    path = Path(path)
    if text is not None:
        raw = text.encode("utf-8")[:slicing.MAX_SOURCE + 1]
    else:
        with open(path, "rb") as f:
            raw = f.read(slicing.MAX_SOURCE + 1)
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) > slicing.MAX_SOURCE:
        # refused before anything parses it: a huge .py would cost the parser gigabytes
        return not_gradable(str(path), rubric, slicing.too_large(len(text.encode("utf-8")) if text is not None
                                                                 else path.stat().st_size),
                            stage=stage, cuda=cuda, notes=notes, digest=digest)
    text = raw.decode("utf-8", "replace")
    findings = scan(text)
    # integrity evidence taken here, in the parent: nothing the worker does can erase it
    review = integrity_review(text, path.name)
    if cuda is None:
        cuda = torch.cuda.is_available()  # safe here: the zygote was forked before
    facts = run_facts(rubric, cuda)
    # the sandbox gets only BatchNorm2d and what it uses (grader/slicing.py), same line numbers,
    # as text over its channel (no copy on disk); the hash, the scan and the review above are of
    # the file as handed in
    data, sliced = slicing.slice_bytes(raw)
    source = data.decode("utf-8", "replace")
    notes = list(notes) + [intake.locate(n, line_map) for n in [slicing.note(sliced)] if n]
    ids = check_ids(rubric)
    sessions = []
    lost_output = []  # what a worker printed before it failed to load

    def open_session():
        try:
            s = zygote.spawn(str(path), rubric.limits, threads=threads, filename=path.name, source=source)
        except SandboxError as e:
            lost_output.append(e.output)
            raise _LoadFailed(RunStatus.TIMEOUT if e.kind == "timeout" else RunStatus.ERROR, str(e)) from None
        sessions.append(s)
        if not s.loaded.get("ok"):
            tb = s.loaded.get("traceback", "").strip()
            status = RunStatus.MEMORY if s.loaded.get("memory") else RunStatus.ERROR
            raise _LoadFailed(status, s.loaded.get("error", "the submission could not be loaded")
                              + (f"\n{tb}" if tb else ""))
        return s

    ctx = Context(rubric, open_session, findings, cuda, oracle=oracle)
    status, reason = RunStatus.GRADED, ""
    try:
        try:
            ctx.start()
            deadline = sessions[0].started + rubric.limits.total_seconds
            outcomes = runner.run(ctx, ids, deadline)
        except _LoadFailed as e:
            status, reason = e.status, e.reason
            outcomes = _not_run(ids, e.reason, cuda)
    finally:
        output = "".join(lost_output) + "".join(s.close(rubric.limits.output_bytes) for s in sessions)
    t_ids = training_ids(rubric)
    training, train_flags = None, []
    if t_ids and stage is None:
        outcomes += [CheckOutcome(cid, None, skipped="training stage not run (--no-train)") for cid in t_ids]
    elif t_ids and status is not RunStatus.GRADED:
        outcomes += [CheckOutcome(cid, False, f"not run: {reason.splitlines()[0]}") for cid in t_ids]
    elif t_ids:
        t_out, runs, train_flags, t_output = stage.run_student(zygote, path, rubric.limits, source=source)
        outcomes += [o for o in t_out if o.check_id in t_ids]
        training = stage.info(runs)
        if t_output.strip():
            output += ("\n" if output else "") + "[training]\n" + t_output
    sandbox = dict(sessions[0].loaded.get("sandbox") or {}) if sessions else {}
    if line_map is not None:
        reason = intake.locate(reason, line_map)
        outcomes = [_located(o, line_map) for o in outcomes]
    static_violation = any(f.in_class for f in findings)
    scored, not_run, total, maximum = scoring.score(outcomes, rubric, static_violation)
    flags = list(train_flags) + review_flags(review)
    if sandbox and not sandbox.get("network_isolated", False):
        flags.append("child_had_network")
    if any(s.outcome.check_id == scoring.BUILTIN and s.outcome.diagnosis is not None for s in scored):
        flags.append("builtin_norm")
    timeouts = [o for o in outcomes if "took longer than" in o.message]
    if status is RunStatus.GRADED and timeouts:
        flags.append("timeout")
    return GradeResult(submission=str(path), submission_hash=digest, status=status, reason=reason, checks=scored,
                       score=total, max_score=maximum, facts=facts, seconds=round(time.monotonic() - t0, 3),
                       student_output=output, not_run=not_run, flags=flags, training=training, notes=list(notes), sandbox=sandbox,
                       review=review, maximum=scoring.maximum(rubric, not_run))
