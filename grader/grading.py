"""One submission through the pipeline (grader process; the submission's code runs only in
sandboxed workers it asks grader/sandbox/ for).

  grade_entry()   an entry as handed in (a .py, a folder, a .zip, a .ipynb) -> intake -> grade_file()
                  or a zero row -> the GradeResult with the student's id: what cli.py (one
                  submission) and batch.py (each student of a class) call
  grade_file()    one .py: read and scan here -> the unit checks in sandboxed workers -> the
                  training stage -> scoring -> GradeResult
  not_gradable()  the zero row of a submission that never reached the sandbox

Whatever the submission does, this returns a GradeResult: a submission that cannot be loaded,
crashes or hangs is graded zero with the reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import platform
import time
import traceback
from pathlib import Path

import torch

import grader
from grader import intake, scoring, slicing
from grader.checks import runner
from grader.checks.worker import Context
from grader.checks.static import review as integrity_review, review_flags, scan
from grader.errors import LoadFailed
from grader.results import CheckOutcome, GradeResult, RunFacts, RunStatus
from grader.sandbox.zygote import open_loaded
from grader.training import stage as training_stage


def run_facts(rubric, cuda: bool) -> RunFacts:
    return RunFacts(seed=rubric.seed, torch_version=torch.__version__, device="cuda" if cuda else "cpu",
                    rubric_path=rubric.path, rubric_hash=rubric.sha256, grader_version=grader.__version__,
                    python=platform.python_version(), rubric_name=rubric.name)


def known_checks() -> list[str]:
    """Every check id a rubric may name."""
    return list(runner.CHECKS) + list(training_stage.CHECK_IDS)


def check_ids(rubric) -> list[str]:
    """The rubric's unit checks, in its order (the training stage's checks run apart)."""
    return [c.id for c in rubric.checks if c.id not in training_stage.CHECK_IDS]


def training_ids(rubric) -> list[str]:
    return [c.id for c in rubric.checks if c.id in training_stage.CHECK_IDS]


def _not_run(ids, reason, cuda):
    # every check of a submission that could not be loaded: zero, with the reason; checks this
    # machine cannot run stay out of the maximum as for everyone
    return [CheckOutcome(cid, None, skipped=runner.not_applicable(cid, cuda)) if runner.not_applicable(cid, cuda)
            else CheckOutcome(cid, False, f"not run: {reason.splitlines()[0]}") for cid in ids]


def _training_not_run(t_ids, reason, stage):
    # the training checks of a submission that never trained: left out with --no-train, else zero
    if stage is None:
        return [CheckOutcome(cid, None, skipped=scoring.NO_TRAIN) for cid in t_ids]
    return [CheckOutcome(cid, False, f"not run: {reason.splitlines()[0]}") for cid in t_ids]


def not_gradable(label: str, rubric, reason: str, status=RunStatus.ERROR, stage=None, cuda: bool | None = None,
                 notes=(), digest: str = "") -> GradeResult:
    """The zero row of a submission that never reached the sandbox (an unreadable zip, no
    BatchNorm2d anywhere, a grader failure): same checks and maximum as everyone's."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    outcomes = _not_run(check_ids(rubric), reason, cuda) + _training_not_run(training_ids(rubric), reason, stage)
    scored, not_run, total, maximum = scoring.score(outcomes, rubric)
    return GradeResult(submission=label, submission_hash=digest, status=status, reason=reason, checks=scored,
                       score=total, max_score=maximum, facts=run_facts(rubric, cuda), seconds=0.0, not_run=not_run,
                       notes=list(notes), maximum=scoring.maximum(rubric, not_run))


def grade_entry(student: str, entry: Path, staging: Path, rubric, zygote, *, stage=None, threads: int = 1,
                oracle=None, contain: bool = False):
    """(GradeResult, the .py graded or None) for one entry as handed in: intake unpacks it into
    staging (a .py stays where it is), then grade_file(), or the zero row intake's reason gives.
    contain: a grader bug becomes this entry's zero row saying so, with the traceback in its
    notes (a class: one student's row, never the batch), instead of propagating (exit 3)."""
    t0 = time.monotonic()
    source = None
    try:
        got = intake.prepare(student, entry, staging)
        source = got.source
        if got.error:
            result = not_gradable(str(entry), rubric, got.error, stage=stage, notes=got.notes)
        else:
            result = grade_file(got.source, rubric, zygote, stage=stage, threads=threads, notes=got.notes,
                                line_map=got.line_map, oracle=oracle)
            result.submission = str(entry)
    except Exception as e:
        if not contain:
            raise
        result = not_gradable(str(entry), rubric, f"internal grader error: {type(e).__name__}: {e}", stage=stage)
        result.notes.append(traceback.format_exc(limit=3))
    result.student = student
    if result.status is RunStatus.GRADED or not result.seconds:
        result.seconds = round(time.monotonic() - t0, 3)
    return result, source


def _located(o: CheckOutcome, line_map) -> CheckOutcome:
    # a notebook's errors name its cells: the lines of the .py written from it mean nothing to the student
    return dataclasses.replace(o, message=intake.locate(o.message, line_map), got=intake.locate(o.got, line_map),
                               notes=[intake.locate(n, line_map) if isinstance(n, str) else n for n in o.notes])


def _read(path: Path, text: str | None) -> bytes:
    # at most one byte over the limit: a huge .py is refused before anything parses it
    if text is not None:
        return text.encode("utf-8")[:slicing.MAX_SOURCE + 1]
    with open(path, "rb") as f:
        return f.read(slicing.MAX_SOURCE + 1)


@dataclasses.dataclass
class _Sandboxed:
    """What the unit checks' workers gave back."""
    status: RunStatus
    reason: str
    outcomes: list
    output: str  # what the submission printed, every worker's
    sandbox: dict  # how the first worker was confined (zygote.facts())


def _unit_checks(path: Path, source: str, rubric, zygote, findings, cuda, threads, oracle) -> _Sandboxed:
    """The rubric's unit checks, each in a sandboxed worker that loaded the submission (a fresh one
    after a crash). A first worker that cannot load it fails them all with the reason."""
    ids = check_ids(rubric)
    sessions = []
    lost_output = []  # what a worker printed before the sandbox lost it

    def open_session():
        try:
            s = open_loaded(zygote, path, rubric.limits, threads=threads, filename=path.name, source=source)
        except LoadFailed as e:
            lost_output.append(e.output)
            if e.session is not None:
                sessions.append(e.session)  # closed below: its output and confinement are reported
            raise
        sessions.append(s)
        return s

    ctx = Context(rubric, open_session, findings, cuda, oracle=oracle)
    status, reason = RunStatus.GRADED, ""
    try:
        try:
            ctx.start()
            outcomes = runner.run(ctx, ids, sessions[0].started + rubric.limits.total_seconds)
        except LoadFailed as e:
            status, reason = e.status, e.reason
            outcomes = _not_run(ids, e.reason, cuda)
    finally:
        output = "".join(lost_output) + "".join(s.close(rubric.limits.output_bytes) for s in sessions)
    sandbox = dict(sessions[0].loaded.get("sandbox") or {}) if sessions else {}
    return _Sandboxed(status, reason, outcomes, output, sandbox)


def _training(path: Path, source: str, rubric, zygote, stage, unit: _Sandboxed):
    """(outcomes, training facts or None, flags, output) of the training stage's checks."""
    t_ids = training_ids(rubric)
    if not t_ids or stage is None or unit.status is not RunStatus.GRADED:
        return _training_not_run(t_ids, unit.reason, stage), None, [], ""
    t_out, runs, flags, output = stage.run_student(zygote, path, rubric.limits, source=source)
    return [o for o in t_out if o.check_id in t_ids], stage.info(runs), list(flags), output


def _flags(outcomes, scored, status, sandbox, review, train_flags) -> list:
    flags = list(train_flags) + review_flags(review)
    if sandbox and not sandbox.get("network_isolated", False):
        flags.append("child_had_network")
    if any(s.outcome.check_id == scoring.BUILTIN and s.outcome.diagnosis is not None for s in scored):
        flags.append("builtin_norm")
    if status is RunStatus.GRADED and any("took longer than" in o.message for o in outcomes):
        flags.append("timeout")
    return flags


def grade_file(path: str | Path, rubric, zygote, cuda: bool | None = None, stage=None, threads: int = 1,
               notes=(), line_map=None, text: str | None = None, oracle=None) -> GradeResult:
    """zygote: a sandbox.zygote.Zygote, or a sandbox.spawned.Spawner (anything with spawn()).
    stage: a grader.training.stage.Stage, or None to leave the training checks out (--no-train).
    threads: torch threads of the sandboxed worker for the checks.
    line_map: a notebook's intake.LineMap, so that every error names its cell and line.
    text: the submission when it exists only in memory (a notebook's cells, grader/notebook.py);
    path then only names it, and nothing is written to disk.
    oracle: where expected values come from (checks/oracle.py): None computes them (full edition),
    a PackOracle reads them from a check pack (student edition)."""
    t0 = time.monotonic()
    path = Path(path)
    raw = _read(path, text)
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) > slicing.MAX_SOURCE:
        size = len(text.encode("utf-8")) if text is not None else path.stat().st_size
        return not_gradable(str(path), rubric, slicing.too_large(size), stage=stage, cuda=cuda, notes=notes,
                            digest=digest)
    text = raw.decode("utf-8", "replace")
    findings = scan(text)
    # integrity evidence taken here, in the parent: nothing the worker does can erase it
    review = integrity_review(text, path.name)
    if cuda is None:
        cuda = torch.cuda.is_available()  # safe here: the zygote was forked before
    # the sandbox gets only BatchNorm2d and what it uses (grader/slicing.py), same line numbers,
    # as text over its channel (no copy on disk); the hash, the scan and the review above are of
    # the file as handed in
    data, sliced = slicing.slice_bytes(raw)
    source = data.decode("utf-8", "replace")
    notes = list(notes) + [intake.locate(n, line_map) for n in [slicing.note(sliced)] if n]
    unit = _unit_checks(path, source, rubric, zygote, findings, cuda, threads, oracle)
    t_out, training, train_flags, t_output = _training(path, source, rubric, zygote, stage, unit)
    outcomes, output, reason = unit.outcomes + t_out, unit.output, unit.reason
    if t_output.strip():
        output += ("\n" if output else "") + "[training]\n" + t_output
    if line_map is not None:
        reason = intake.locate(reason, line_map)
        outcomes = [_located(o, line_map) for o in outcomes]
    # built-in normalisation the source scan found inside the class zeroes the numeric checks
    static_zeroes = runner.numeric_ids() if any(f.in_class for f in findings) else frozenset()
    scored, not_run, total, maximum = scoring.score(outcomes, rubric, static_zeroes)
    return GradeResult(submission=str(path), submission_hash=digest, status=unit.status, reason=reason, checks=scored,
                       score=total, max_score=maximum, facts=run_facts(rubric, cuda),
                       seconds=round(time.monotonic() - t0, 3), student_output=output, not_run=not_run,
                       flags=_flags(outcomes, scored, unit.status, unit.sandbox, review, train_flags),
                       training=training, notes=list(notes), sandbox=unit.sandbox, review=review,
                       maximum=scoring.maximum(rubric, not_run))
