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

Also here: which shard a task is (Shard, from --shard K/N, a zero-based --shard-index, or the
scheduler's environment); how many CPUs it may use is cpus.default_jobs (docs/batch.md).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from grader import grading, intake
from grader.cpus import default_jobs  # noqa: F401  (also batch.default_jobs, where it long lived)
from grader.errors import UsageError
from grader.output import gradescope, report
from grader.output.files import write_atomic


SHARD_FIX = ("K counts from 1 in --shard K/N; a zero-based index (Slurm's --array=0-7, a Kubernetes "
             "indexed Job, a CI matrix) goes in --shard-index I --shard-count N, or use --shard-from-env")


class ShardError(UsageError, ValueError):
    """An impossible shard: one line naming the flag and the fix (exit 2), never a share nobody grades."""


@dataclass(frozen=True)
class Shard:
    index: int  # zero-based: 0 <= index < count
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            k, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise ShardError(f"--shard {text}: expected K/N, e.g. 2/8") from None
        if n < 1:
            raise ShardError(f"--shard {text}: N must be at least 1")
        if not 1 <= k <= n:
            raise ShardError(f"--shard {text}: K must be between 1 and {n}; {SHARD_FIX}")
        return cls(k - 1, n)

    @classmethod
    def of(cls, index: int, count: int, source: str = "--shard-index") -> "Shard":
        if count < 1:
            raise ShardError(f"--shard-count {count}: must be at least 1")
        if not 0 <= index < count:
            hint = (f"index {count} of {count} means the array is one-based: pass --shard {index}/{count}, or start "
                    "the array at 0" if index == count else
                    f"the array has more tasks than --shard-count {count}, or --shard-count is too small")
            raise ShardError(f"{source} {index}: must be between 0 and {count - 1} ({hint})")
        return cls(index, count)

    @classmethod
    def from_env(cls, env, count: int | None = None) -> "Shard":
        """The shard this task is, from its scheduler's environment: a Slurm array task, a Kubernetes
        indexed Job's pod, or a GitLab parallel job. count (--shard-count) is needed only where
        the scheduler does not say how many there are, and must agree where it does."""
        def num(name):
            v = env.get(name, "").strip()
            if not v:
                return None
            try:
                return int(v)
            except ValueError:
                raise ShardError(f"--shard-from-env: ${name} is '{v}', not a whole number") from None

        if num("SLURM_ARRAY_TASK_ID") is not None:
            tid, lo, hi = num("SLURM_ARRAY_TASK_ID"), num("SLURM_ARRAY_TASK_MIN"), num("SLURM_ARRAY_TASK_MAX")
            step = num("SLURM_ARRAY_TASK_STEP") or 1
            n = num("SLURM_ARRAY_TASK_COUNT")
            if lo is None:
                raise ShardError("--shard-from-env: $SLURM_ARRAY_TASK_ID is set but not $SLURM_ARRAY_TASK_MIN; "
                                 "pass --shard-index and --shard-count instead")
            if n is None and hi is not None:
                n = (hi - lo) // step + 1
            # --array=1-8, 0-7 and 0-14:2 all give indexes 0..N-1; a list such as 1,3,8 does not
            if (tid - lo) % step:
                raise ShardError(f"--shard-from-env: Slurm task {tid} is not on the array's range {lo}-{hi}:{step}; "
                                 "submit a contiguous range such as --array=0-7")
            where, index = "$SLURM_ARRAY_TASK_ID", (tid - lo) // step
        elif num("JOB_COMPLETION_INDEX") is not None:
            where, index, n = "$JOB_COMPLETION_INDEX", num("JOB_COMPLETION_INDEX"), None
        elif num("CI_NODE_INDEX") is not None:  # GitLab's `parallel:`, one-based
            where, index, n = "$CI_NODE_INDEX", num("CI_NODE_INDEX") - 1, num("CI_NODE_TOTAL")
        else:
            raise ShardError("--shard-from-env: none of $SLURM_ARRAY_TASK_ID, $JOB_COMPLETION_INDEX, $CI_NODE_INDEX "
                             "is set (not an array task?); pass --shard-index I --shard-count N instead")
        if n is None:
            if count is None:
                raise ShardError(f"--shard-from-env: {where} gives the index but not how many shards; "
                                 "add --shard-count N (the Job's completions)")
            n = count
        elif count is not None and count != n:
            raise ShardError(f"--shard-count {count}: the scheduler runs {n} tasks ({where}); drop --shard-count "
                             f"or make them agree, or a share goes ungraded")
        return cls.of(index, n, source=f"--shard-from-env: {where}")

    def __str__(self):
        return f"{self.index + 1}/{self.count}"

    def owns(self, student: str) -> bool:
        # by a hash of the id, not the position: adding a late student moves nobody else
        return zlib.crc32(student.encode("utf-8")) % self.count == self.index


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
