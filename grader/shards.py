"""Which share of a class one task of a job array grades (grader process; no torch, so the
command line can check the flags before the sandbox starts): --shard K/N, a zero-based
--shard-index I --shard-count N, or the scheduler's environment (--shard-from-env: Slurm,
Kubernetes indexed Jobs, GitLab CI). A student belongs to a shard by a hash of the id.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from grader.errors import UsageError


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
