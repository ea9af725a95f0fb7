"""The checks that need a GPU, in one run (for a lent accelerator machine):

    python benchmarks/gpu_check.py

1. times one epoch of LeNet-5 with the reference BN (the stage's fused path) on CUDA, data
   resident on the GPU: the grader's loop (uint8 batches normalised on the GPU, validation of
   5,000 images) against a bare loop over normalised tensors already on the GPU, on 45,000
   synthetic CIFAR-shaped images (the timing does not depend on the pixels); goal < 1 s per
   epoch on an H100/H200-class GPU (issue 14);
2. grades every corpus submission and prints the verdict of device.cuda (and any check that
   differs from the file's CPU expectation), so the GPU expectations can be read off.

Without CUDA it says so in one line per part and exits 0 (the corpus part needs a GPU to mean
anything: device.cuda is not run there).
"""
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from grader import cpus  # noqa: E402

os.environ.update(cpus.openmp_wait_env(exclusive=True))  # as the grader waits for one submission, before torch

from grader.sandbox import zygote  # noqa: E402

Z = zygote.shared()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from grader import grading, rubric  # noqa: E402
from grader.training import lenet  # noqa: E402
from reference.fused import FusedBatchNorm2d  # noqa: E402
from test_corpus import expectation, verdicts  # noqa: E402


def corpus():
    rub = rubric.load(None, grading.known_checks())
    for f in sorted((ROOT / "tests" / "corpus").glob("*.py")):
        if "endless" in f.name or "hang" in f.name:
            continue
        r = grading.grade_file(f, rub, Z)
        failed, _ = verdicts(r)
        exp = expectation(f)
        cuda = failed.pop("device.cuda", None)
        drift = {k: v for k, v in failed.items() if exp["fail"].get(k) != v}
        missing = {k for k in exp["fail"] if k not in failed} if exp["kind"] == "fail" else set()
        print(f"{f.name:40s} device.cuda={'pass' if cuda is None else cuda:18s} "
              f"{'drift=' + str(drift) if drift else ''}{' missing=' + str(missing) if missing else ''}", flush=True)


def norm(c, d):
    return FusedBatchNorm2d(c, d)


def epoch():
    dev = "cuda"
    n = 45000
    x_u8 = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 10, (n,), device=dev)
    times = []
    for _ in range(3):  # the first pays for kernel selection and the caching allocator
        torch.manual_seed(0)
        m = lenet.LeNet5(norm=norm).to(dev)
        torch.cuda.synchronize()
        t = time.perf_counter()
        lenet.train(m, x_u8, y, x_u8[:5000], y[:5000], epochs=1, batch_size=128, optimizer="sgd", lr=0.1,
                    momentum=0.9, weight_decay=0.0, seed=0, device=dev)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    tg = min(times[1:])
    x = lenet.normalise(x_u8, dev)
    torch.manual_seed(0)
    m = lenet.LeNet5(norm=norm).to(dev)
    opt = lenet.make_optimizer(m, "sgd", 0.1, 0.9, 0.0)
    order = torch.randperm(n, device=dev)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, n, 128):
        idx = order[i:i + 128]
        loss = F.cross_entropy(m(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    tb = time.perf_counter() - t
    print(f"{torch.cuda.get_device_name(0)}: one epoch of 45,000 images, batch 128: grader loop {tg:.2f} s "
          f"(incl. validation of 5,000; goal < 1 s), bare loop {tb:.2f} s, ratio {tg / tb:.2f}x", flush=True)


if __name__ == "__main__":
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(), flush=True)
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU epoch timing and the corpus's device.cuda verdicts were skipped "
              "(nothing measured; run this on a machine with a GPU)", flush=True)
        sys.exit(0)
    epoch()
    corpus()
