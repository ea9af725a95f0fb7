"""Batch grading of a class folder (parent process).

Each entry of SUBMISSIONS_DIR is one student (see intake.py). A pool of threads grades them:
the student's code still runs only in sandboxed workers forked from the one zygote, and the
checks' reference computations run here. Per student, OUT/<id>/results.json and report.html
are written atomically (with the graded source as submission.py, for the similarity check),
so a run killed halfway leaves only complete students, and a rerun grades exactly the missing
ones (unless regrade). Whatever happens to one student becomes that student's zero row with a
status; it never stops the others. The gradebook and summary are rebuilt from OUT afterwards
(gradebook.py), so shards writing into one OUT end with one gradebook.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from grader import grading, intake
from grader.output import gradescope, report
from grader.results import RunStatus


@dataclass
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            k, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard {text}: expected K/N, e.g. 2/8") from None
        if not (n >= 1 and 1 <= k <= n):
            raise ValueError(f"--shard {text}: K must be between 1 and N")
        return cls(k, n)

    def owns(self, student: str) -> bool:
        # by a hash of the id, not the position: adding a late student moves nobody else
        return zlib.crc32(student.encode("utf-8")) % self.count == self.index - 1


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def done(out: Path, student: str) -> bool:
    return (out / student / "results.json").exists()


def _write_student(out: Path, result, source: Path | None, lang):
    d = out / result.student
    d.mkdir(parents=True, exist_ok=True)
    if source is not None and source.exists():
        tmp = d / ".submission.py.tmp"
        shutil.copyfile(source, tmp)
        os.replace(tmp, d / "submission.py")
    report.write(result, d / "report.html", lang)
    gradescope.write_json(result, d / "results.json", lang)  # last: its presence means "done"


def run(folder: Path, out: Path, rubric, zygote, *, jobs: int, shard: Shard | None = None, regrade: bool = False,
        stage=None, lang: str = "en", log=None) -> list:
    """Grade every student of folder this shard owns; returns their GradeResults."""
    entries = intake.discover(folder)
    if shard is not None:
        entries = [(sid, p) for sid, p in entries if shard.owns(sid)]
    todo = [(sid, p) for sid, p in entries if regrade or not done(out, sid)]
    skipped = len(entries) - len(todo)
    log = log or (lambda line: None)
    log(f"{len(entries)} students{f' in shard {shard.index}/{shard.count}' if shard else ''}; "
        f"{len(todo)} to grade, {skipped} already graded (--regrade to redo)")
    if stage is not None and todo:
        stage.baselines()  # once for the whole batch, before the pool
    jobs = max(1, min(jobs, len(todo) or 1))
    # torch threads per worker: the pool shares the machine's cores instead of oversubscribing
    threads = max(1, default_jobs() // jobs)
    if stage is not None:
        stage.threads = threads
    out.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(prefix="bn-grade-intake-"))
    counter = {"n": 0}
    lock = threading.Lock()
    results = []

    def one(item):
        sid, entry = item
        t0 = time.monotonic()
        staging = staging_root / sid
        staging.mkdir(parents=True, exist_ok=True)
        source = None
        try:
            got = intake.prepare(sid, entry, staging)
            source = got.source
            if got.error:
                result = grading.not_gradable(entry.name, rubric, got.error, stage=stage, notes=got.notes)
            else:
                result = grading.grade_file(got.source, rubric, zygote, stage=stage, threads=threads,
                                            notes=got.notes, line_map=got.line_map)
                result.submission = str(entry)
        except Exception as e:  # a grader bug costs this student a row with the reason, not the batch
            result = grading.not_gradable(entry.name, rubric, f"internal grader error: {type(e).__name__}: {e}",
                                          stage=stage)
            result.notes.append(traceback.format_exc(limit=3))
        result.student = sid
        if result.status is RunStatus.GRADED or not result.seconds:
            result.seconds = round(time.monotonic() - t0, 3)
        _write_student(out, result, source, lang)
        shutil.rmtree(staging, ignore_errors=True)
        with lock:
            counter["n"] += 1
            results.append(result)
            log(f"[{counter['n']}/{len(todo)}] {sid}: {result.score:g}/{result.max_score:g} {result.status.value} "
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
