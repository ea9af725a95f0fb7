"""Batch grading of a class folder (grader process).

Each entry of SUBMISSIONS_DIR is one student (see intake.py). A pool of threads grades them,
each through grading.grade_entry(), the pipeline a single submission takes too: the student's
code still runs only in sandboxed workers forked from the one zygote, and the checks' reference
computations run here. Per student, OUT/<id>/results.json and report.html are written
atomically (output/files.write_atomic) (with the graded source as submission.py, for the similarity check),
so a run killed halfway leaves only complete students, and a rerun grades exactly the missing
ones (unless regrade). Whatever happens to one student becomes that student's zero row with a
status; it never stops the others. The gradebook and summary are rebuilt from OUT afterwards
(gradebook.py), so shards writing into one OUT end with one gradebook.

Which shard a task is: shards.py; how many CPUs it may use: cpus.py (docs/batch.md).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grader import grading, intake
from grader.cpus import default_jobs
from grader.shards import Shard
from grader.output import gradescope, report
from grader.output.files import write_atomic


def done(out: Path, student: str) -> bool:
    return (out / student / "results.json").exists()


def _write_student(out: Path, result, source: Path | None, lang):
    d = out / result.student
    d.mkdir(parents=True, exist_ok=True)
    if source is not None and source.exists():
        write_atomic(d / "submission.py", source.read_bytes())
    report.write(result, d / "report.html", lang)
    gradescope.write_json(result, d / "results.json", lang)  # last: its presence means "done"


def _todo(folder: Path, out: Path, shard: Shard | None, regrade: bool, log) -> list:
    """[(student id, entry)] this shard owns and still has to grade (all of them with regrade)."""
    entries = intake.discover(folder)
    if shard is not None:
        entries = [(sid, p) for sid, p in entries if shard.owns(sid)]
    todo = [(sid, p) for sid, p in entries if regrade or not done(out, sid)]
    log(f"{len(entries)} students{f' in shard {shard}' if shard else ''}; "
        f"{len(todo)} to grade, {len(entries) - len(todo)} already graded (--regrade to redo)")
    return todo


def _grade_student(sid: str, entry: Path, staging_root: Path, out: Path, rubric, zygote, stage, threads: int,
                   lang: str):
    """One student: grade_entry() in its own scratch folder (a grader bug is its zero row, never
    the batch's end), then OUT/<id>/ written."""
    staging = staging_root / sid
    staging.mkdir(parents=True, exist_ok=True)
    try:
        result, source = grading.grade_entry(sid, entry, staging, rubric, zygote, stage=stage, threads=threads,
                                             contain=True)
        _write_student(out, result, source, lang)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def run(folder: Path, out: Path, rubric, zygote, *, jobs: int, shard: Shard | None = None, regrade: bool = False,
        stage=None, lang: str = "en", log=None) -> list:
    """Grade every student of folder this shard owns; returns their GradeResults."""
    log = log or (lambda line: None)
    todo = _todo(folder, out, shard, regrade, log)
    if stage is not None and todo:
        stage.baselines()  # once for the whole batch, before the pool
    jobs = max(1, min(jobs, len(todo) or 1))
    # torch threads per worker: the pool shares the machine's cores instead of oversubscribing
    threads = max(1, default_jobs() // jobs)
    if stage is not None:
        stage.threads = threads
    out.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(prefix="bn-grade-intake-"))
    lock = threading.Lock()
    results = []

    def one(item):
        sid, entry = item
        result = _grade_student(sid, entry, staging_root, out, rubric, zygote, stage, threads, lang)
        with lock:
            results.append(result)
            log(f"[{len(results)}/{len(todo)}] {sid}: {result.score:g}/{result.max_score:g} {result.status.value} "
                f"({result.seconds:.1f} s)")
        return result

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, todo))
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    return sorted(results, key=lambda r: r.student)


def stderr_log(quiet: bool):
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)
