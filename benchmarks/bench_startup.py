"""No-train grading of one submission against a bare `import torch`, side by side.

    python benchmarks/bench_startup.py [--runs 5] [--sandbox auto|bubblewrap|unconfined|spawned] [SUBMISSION]

Runs both commands alternately (so machine noise hits both alike) and prints the medians and
their ratio, and which sandbox the grading ran in. Goal: `grade.py SUB --no-train` at most
1.5x `python -c "import torch"`, with the submission in the bubblewrap sandbox.
"""
import argparse
import json
import os
import statistics
import tempfile
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd, env=None):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("submission", nargs="?", default=str(ROOT / "tests" / "corpus" / "correct_textbook.py"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--sandbox", choices=("auto", "bubblewrap", "unconfined", "spawned"), default="auto",
                   help="BN_GRADE_SANDBOX for the grading runs (spawned: what Windows and macOS laptops run)")
    a = p.parse_args()
    env = {**os.environ, "BN_GRADE_SANDBOX": a.sandbox}
    bare = [sys.executable, "-c", "import torch"]
    grade = [sys.executable, str(ROOT / "grade.py"), a.submission, "--no-train"]
    timed(bare)  # warm the page cache for both
    timed(grade, env)
    tb, tg = [], []
    for _ in range(a.runs):
        tb.append(timed(bare))
        tg.append(timed(grade, env))
    mb, mg = statistics.median(tb), statistics.median(tg)
    print(f"bare import torch      median {mb:.2f} s  ({', '.join(f'{t:.2f}' for t in tb)})")
    print(f"grade.py --no-train    median {mg:.2f} s  ({', '.join(f'{t:.2f}' for t in tg)})")
    print(f"ratio grade / import   {mg / mb:.2f}x   (goal <= 1.5x)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(grade + ["--json", f"{tmp}/r.json"], cwd=ROOT, capture_output=True, env=env)
        sandbox = json.load(open(f"{tmp}/r.json"))["extra_data"].get("sandbox", {})
    print(f"sandbox                {sandbox.get('engine')}: {sandbox.get('isolation')}")


if __name__ == "__main__":
    main()
