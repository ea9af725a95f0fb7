"""How many CPUs this process may use (grader process): the one answer for --jobs, for the
sandboxed workers' torch threads and for the training stage's. A job array or a container gets
this wrong most easily (docs/batch.md): os.cpu_count() counts the whole machine. Also how torch's
idle OpenMP threads wait (openmp_wait_env), decided here before torch is imported anywhere.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path


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


def default_jobs(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup"),
                 platform: str | None = None) -> int:
    """The CPUs this process may use, the one answer for --jobs and for torch threads (the training
    stage's too): on Linux its affinity (Slurm's binding, taskset, cpusets), capped by a cgroup CPU
    quota (docker --cpus, Kubernetes limits), where os.cpu_count() would count the whole machine
    and oversubscribe it; on a Mac its performance cores (efficiency cores slow a synchronised
    step down); on Windows its physical cores as torch counts them (hyper-threads add little)."""
    platform = platform or sys.platform
    if platform == "darwin":
        for key in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):
            try:
                n = int(subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout)
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
            if n > 0:
                return n
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        import torch  # its default: the physical cores it found
        return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    quota = _cgroup_quota(root, proc_cgroup)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


# How many times an idle thread of GNU libgomp (torch's OpenMP on Linux) checks for work before
# it sleeps. LeNet-5 at batch 128 is hundreds of small operations per step, each a parallel
# region: a thread that sleeps at once (OMP_WAIT_POLICY=PASSIVE) must be woken for every one,
# and on 2 cores here a 2-thread epoch with a textbook BN layer took 13-15 s, slower than one
# thread (10.5 s); spinning 20,000 times first, 7-8 s. libgomp's own default (300,000) is as fast
# alone but unpredictable when runs share the cores: two 2-thread runs side by side took 24-191 s
# each from one try to the next, against 55-60 s with 20,000 and 13-15 s passive
# (benchmarks/bench_openmp.py; docs/calibration.md, "OpenMP waits").
SPIN_COUNT = "20000"
OPENMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def openmp_wait_env(exclusive: bool, environ=None, platform: str | None = None) -> dict:
    """The environment that says how idle OpenMP threads wait, for this process (set before torch
    loads) and for the sandbox's zygote, which inherits the answer (sandbox/engine.py). A policy
    already in the environment wins: the user's, or the one this process was started with.
    exclusive: the grader's runs have the cores to themselves (one submission, or a class with
    --jobs 1), so a short spin pays; otherwise (jobs side by side, where any spin is waste)
    threads sleep at once. Only libgomp's spin is measured; LLVM's and Intel's OpenMP (macOS,
    Windows) get the passive policy."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    given = {k: environ[k] for k in OPENMP_KEYS if k in environ}
    if given:
        return given
    if exclusive and platform.startswith("linux"):
        return {"GOMP_SPINCOUNT": SPIN_COUNT}
    return {"OMP_WAIT_POLICY": "PASSIVE"}
