"""Calibration of the training stage's defaults: the no-BN and reference-BN runs of the
default rubric for several seeds, with their test accuracies, gaps and seconds.

    python benchmarks/calibrate_training.py --data data --seeds 0 1 2 3 4 [--curves]

Uses the grader's own Stage (same data loading, split, initial weights and loop). The results
behind docs/calibration.md. Runs are cached in --cache like the grader's baselines.
"""
import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader import cpus  # noqa: E402

os.environ.update(cpus.openmp_wait_env(exclusive=True))  # as the grader waits for one submission, before torch

from grader import rubric as R  # noqa: E402
from grader.grading import known_checks  # noqa: E402
from grader.training import data  # noqa: E402
from grader.training.stage import Stage  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(data.default_data_dir()))
    p.add_argument("--cache", default=str(data.default_cache_dir()))
    p.add_argument("--rubric")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--curves", action="store_true", help="also print each run's per-epoch losses")
    a = p.parse_args()
    rub = R.load(a.rubric, known_checks())
    ds = data.load(a.data, a.cache, download=False)
    for seed in a.seeds:
        b = Stage(dataclasses.replace(rub.training, seed=seed), ds, a.cache).baselines()
        no, bn = b["no_bn"], b["reference_bn"]
        print(json.dumps({"seed": seed, "no_bn": no.test_accuracy, "reference_bn": bn.test_accuracy,
                          "gap_points": round(100 * (bn.test_accuracy - no.test_accuracy), 1),
                          "seconds": [no.seconds, bn.seconds], "cached": no.cached}), flush=True)
        if a.curves:  # the per-epoch losses, to hold a change of the harness to the same curves
            for name, run in (("no_bn", no), ("reference_bn", bn)):
                print(f"  seed {seed} {name:<13} train " + " ".join(f"{v:.4f}" for v in run.train_loss)
                      + "   val " + " ".join(f"{v:.4f}" for v in run.val_loss), flush=True)


if __name__ == "__main__":
    main()
