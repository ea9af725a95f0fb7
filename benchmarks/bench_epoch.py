"""The training stage's epoch against an honest peer, side by side in one run (issue 14):

  peer       what people run: torchvision's CIFAR10 way, the decoded images in memory as a
             (N, 32, 32, 3) uint8 array, per sample PIL image -> ToTensor -> Normalize, batched by a
             DataLoader with 2 worker processes (shuffled), the course's LeNet-5 written with
             torch's layers (nn.AvgPool2d, nn.Sigmoid) holding the student's BatchNorm2d,
             torch.optim.SGD (lr 0.1, momentum 0.9), loss.item() per step; the training pass alone
  student    the grader's student run, everything the stage does for it: spawn the sandboxed
             worker, send it the data, train there (the same student file, the same network and
             optimiser; per epoch the validation pass and the loss bookkeeping), get the trained
             state back and measure validation loss and test accuracy in the parent
             (Stage.run_student, wall clock, divided by the epochs)
  no_bn, reference_bn   the baselines' runs as the stage trains them (Stage._train_baselines:
             on a CPU with two or more cores side by side, each on half of them), each run's
             own training clock

    python benchmarks/bench_epoch.py [--data DIR] [--student FILE] [--limit N] [--repeat R]

Each repeat measures all of them one after the other (interleaved, so load on the machine hits
all alike); the ratio lines take the medians. Goals: student / peer <= 0.5, reference_bn / no_bn
<= 1.2. Needs CIFAR-10 (an image folder or torchvision's batches; decoded into --cache once);
--limit trains on N images of the training split (the validation and test sets stay whole).
"""
import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the peer runs in the environment people run in; the grader's side waits as bn-grade does for
# one submission (grader/cpus.py), set before torch loads here and in the sandbox's zygote
PEER_ENV = dict(os.environ)
from grader import cpus  # noqa: E402

if "--peer-run" not in sys.argv:
    os.environ.update(cpus.openmp_wait_env(exclusive=True))

from grader.sandbox import zygote  # noqa: E402

# forked before torch's threads exist, as the grader does; the peer's child needs none
Z = None if "--peer-run" in sys.argv else zygote.shared()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from grader import rubric as R  # noqa: E402
from grader.grading import known_checks  # noqa: E402
from grader.training import data  # noqa: E402
from grader.training import stage as S  # noqa: E402

try:
    from grader.training import lenet  # noqa: E402
except ImportError:  # an older tree (before the harness moved), for a before/after table
    from reference import lenet  # noqa: E402


def load_student(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_student", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.BatchNorm2d


class CifarInMemory(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's __getitem__: an HWC uint8 array in memory, a PIL image per
    sample, then the transform."""

    def __init__(self, images_nchw, labels, transform):
        self.data = images_nchw.permute(0, 2, 3, 1).contiguous().numpy()  # (N, 32, 32, 3) as torchvision keeps it
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def peer_model(bn):
    # the course's LeNet-5 (d2l's, with BN) as people write it
    return nn.Sequential(
        nn.Conv2d(3, 6, kernel_size=5), bn(6, 4), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), bn(16, 4), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), bn(120, 2), nn.Sigmoid(),
        nn.Linear(120, 84), bn(84, 2), nn.Sigmoid(), nn.Linear(84, 10))


def peer_epoch(argv):
    # in a fresh interpreter, as people run it: nothing the grader tunes in its own process
    # (lenet.steady_malloc) carries over to the peer
    import subprocess
    got = subprocess.run([sys.executable, __file__, "--peer-run", *argv], capture_output=True, text=True,
                         env=PEER_ENV)
    if got.returncode:
        sys.exit(f"the peer run failed:\n{got.stderr[-3000:]}")
    return float(got.stdout.split()[-1])


def peer_run(ds, bn, batch_size, workers, threads):
    from torchvision import transforms
    torch.set_num_threads(threads)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(lenet.MEAN, lenet.STD)])
    loader = torch.utils.data.DataLoader(CifarInMemory(ds[0], ds[1], tf), batch_size=batch_size, shuffle=True,
                                         num_workers=workers)
    torch.manual_seed(0)
    model = peer_model(bn)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    t = time.perf_counter()
    total, n = 0.0, 0
    for x, y in loader:
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(y)
        n += len(y)
    return time.perf_counter() - t


def student_epoch(stage, student, limits):
    stage._baselines = {"no_bn": S.Run(0.1, [2.3], [2.3], 0.0), "reference_bn": S.Run(0.5, [1.5], [1.5], 0.0)}
    t = time.perf_counter()
    outcomes, runs, flags, output = stage.run_student(Z, student, limits)
    wall = time.perf_counter() - t
    run = runs["student_bn"]
    if run.test_accuracy is None:
        sys.exit(f"the student run failed: {[o.message for o in outcomes]}\n{output}")
    return wall / stage.cfg.epochs, run.seconds / stage.cfg.epochs


def baseline_epochs(stage):
    # as the stage trains them: side by side on half the cores each where the CPU has two or
    # more, else one after the other; each run's own training clock, divided by the epochs
    stage._baselines = None
    runs = stage._train_baselines()
    return {name: runs[name].seconds / stage.cfg.epochs for name in ("no_bn", "reference_bn")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(data.default_data_dir()))
    p.add_argument("--cache", default=str(data.default_cache_dir()))
    p.add_argument("--student", default=str(ROOT / "tests" / "corpus" / "correct_textbook.py"),
                   help="the submission whose BatchNorm2d both the peer and the student run use")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="train on N images (default: the whole training split)")
    p.add_argument("--epochs", type=int, default=0,
                   help="epochs of the student run, whose wall clock is divided by them (default: the rubric's)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the runs (default: the stage's, all "
                   "the cores the job may use)")
    p.add_argument("--peer-run", action="store_true", help=argparse.SUPPRESS)  # one peer epoch, in a child
    argv = sys.argv[1:]
    a = p.parse_args()
    rub = R.load(None, known_checks())
    cfg = dataclasses.replace(rub.training, epochs=a.epochs or rub.training.epochs, device="cpu",
                              max_train_images=a.limit or rub.training.max_train_images)
    ds = data.load(a.data, a.cache, download=False)
    stage = S.Stage(cfg, ds, a.cache)
    if a.threads:
        stage.threads = a.threads
    tr_x, tr_y = stage._tensors()[:2]
    peer_data = (tr_x, tr_y)
    bn = load_student(a.student)
    threads = stage.threads
    if a.peer_run:
        print(peer_run(peer_data, bn, cfg.batch_size, a.workers, S.cores()))  # the peer: all the cores
        return
    print(f"{len(tr_y)} training images, {len(stage.val_idx)} validation, {len(ds.test_labels)} test; batch "
          f"{cfg.batch_size}; {threads} torch threads (peer {S.cores()}); peer DataLoader workers {a.workers}; student "
          f"{Path(a.student).name}; torch {torch.__version__}", flush=True)
    runs = {"peer": [], "student": [], "no_bn": [], "reference_bn": []}
    for r in range(a.repeat):
        runs["peer"].append(peer_epoch(argv))
        wall, inside = student_epoch(stage, a.student, rub.limits)
        runs["student"].append(wall)
        line = (f"repeat {r + 1}: peer {runs['peer'][-1]:6.2f} s   student run {wall:6.2f} s "
                f"(training in the worker {inside:.2f} s)")
        if not a.skip_baselines:
            for name, seconds in baseline_epochs(stage).items():
                runs[name].append(seconds)
            line += f"   no_bn {runs['no_bn'][-1]:6.2f} s   reference_bn {runs['reference_bn'][-1]:6.2f} s"
        print(line + "   (s per epoch)", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    print(f"ratio student / peer         {med['student'] / med['peer']:.2f}x   (goal <= 0.5x; medians "
          f"{med['student']:.2f} s / {med['peer']:.2f} s per epoch)")
    if not a.skip_baselines:
        print(f"ratio reference_bn / no_bn   {med['reference_bn'] / med['no_bn']:.2f}x   (goal <= 1.2x; medians "
              f"{med['reference_bn']:.2f} s / {med['no_bn']:.2f} s per epoch)")


if __name__ == "__main__":
    main()
