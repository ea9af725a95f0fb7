"""A class of N submissions graded without training on 2 workers, against one bare
`python -c "import torch"`, side by side in one run.

    python benchmarks/bench_batch.py [--n 37] [--jobs 2]

The class is built from the test corpus (correct, wrong and broken submissions, hanging ones
left out so the figure measures grading, not time limits), every one in its own namespaces of
the bubblewrap sandbox. Goal (the sandbox issue): 37 submissions in at most 6x one bare import.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=37)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    corpus = [f for f in sorted((ROOT / "tests" / "corpus").glob("*.py"))
              if "endless" not in f.name and "hang" not in f.name and "slow" not in f.name]
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "subs"
        subs.mkdir()
        for i in range(a.n):
            shutil.copyfile(corpus[i % len(corpus)], subs / f"s{i:03d}.py")
        bare = timed([sys.executable, "-c", "import torch"])
        batch = timed([sys.executable, str(ROOT / "grade.py"), str(subs), "--out", str(Path(tmp) / "out"),
                       "--no-train", "--jobs", str(a.jobs), "--quiet"])
        graded = len(list((Path(tmp) / "out").glob("*/results.json")))
    print(f"bare import torch            {bare:6.2f} s")
    print(f"{a.n} submissions, {a.jobs} jobs     {batch:6.2f} s   ({graded} results written)")
    print(f"ratio batch / import         {batch / bare:.2f}x   (goal <= 6x)")


if __name__ == "__main__":
    main()
