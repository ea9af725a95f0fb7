"""Batch grading of a class folder (parent process).

Each entry of SUBMISSIONS_DIR is one student (see intake.py). A pool of threads grades them:
the student's code still runs only in sandboxed workers forked from the one zygote, and the
checks' reference computations run here. Per student, OUT/<id>/results.json and report.html
are written atomically (with the graded source as submission.py, for the similarity check),
so a run killed halfway leaves only complete students, and a rerun grades exactly the missing
ones (unless regrade). Whatever happens to one student becomes that student's zero row with a
status; it never stops the others. The gradebook and summary are rebuilt from OUT afterwards
(gradebook.py), so shards writing into one OUT end with one gradebook.

Also here: which shard a task is (Shard, from --shard K/N, a zero-based --shard-index, or the
scheduler's environment) and how many CPUs it may use (default_jobs: affinity and cgroup quota),
the two facts a job array gets wrong most easily (docs/batch.md).
"""
from __future__ import annotations

import math
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


SHARD_FIX = ("K counts from 1 in --shard K/N; a zero-based index (Slurm's --array=0-7, a Kubernetes "
             "indexed Job, a CI matrix) goes in --shard-index I --shard-count N, or use --shard-from-env")


class ShardError(ValueError):
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


def _cgroup_quota(root: Path, proc_cgroup: Path) -> float | None:
    """CPUs the cgroup quota allows this process (fractional), or None: v2's cpu.max or v1's
    cpu.cfs_quota_us, on the process's own cgroup and every ancestor (the tightest wins)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    best = None

    def consider(quota, period):
        nonlocal best
        if quota > 0 and period > 0:
            best = quota / period if best is None else min(best, quota / period)

    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # cgroup v2
            bases = [root]
        elif "cpu" in controllers.split(","):
            bases = [root / c for c in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
        else:
            continue
        for base in bases:
            d = base / rel.lstrip("/")
            while True:
                try:
                    if controllers == "":
                        q, per = (d / "cpu.max").read_text().split()[:2]
                        if q != "max":
                            consider(int(q), int(per))
                    else:
                        consider(int((d / "cpu.cfs_quota_us").read_text()), int((d / "cpu.cfs_period_us").read_text()))
                except (OSError, ValueError):
                    pass
                # a container sees its own cgroup as the root: stop at the mount's top
                if d == base or d.parent == d:
                    break
                d = d.parent
    return best


def default_jobs(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process may use: its affinity (Slurm's binding, taskset, cpusets), capped by
    a cgroup CPU quota (docker --cpus, Kubernetes limits), where os.cpu_count() would count the
    whole machine and oversubscribe it."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota(root, proc_cgroup)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


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
    log(f"{len(entries)} students{f' in shard {shard}' if shard else ''}; "
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
