"""One training epoch of LeNet-5 (reference BN) three ways, side by side, same model and data:

  conventional   torchvision ImageFolder read per sample (PIL decode, ToTensor, Normalize),
                 batched by a DataLoader with worker processes
  grader         reference/lenet.py's loop on the decoded uint8 cache, normalised per batch
  bare           the same loop over float tensors already normalised in memory

    python benchmarks/bench_epoch.py [--data DIR] [--workers 2] [--limit N]

Goals (issue 3): grader <= 0.5x conventional, grader <= 1.1x bare. Needs an image-folder copy
of CIFAR-10 (see ../shared/data/README.md); --limit trains on the first N images of a shuffle.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from grader.training import data  # noqa: E402
from reference import lenet  # noqa: E402
from reference.batchnorm import BatchNorm2d  # noqa: E402


def model_and_opt(seed=0):
    torch.manual_seed(seed)
    m = lenet.LeNet5(norm=lambda c, d: BatchNorm2d(c, d))
    return m, lenet.make_optimizer(m, "sgd", 0.1, 0.9, 0.0)


def step(m, opt, x, y):
    loss = F.cross_entropy(m(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def conventional(folder, batch_size, workers, limit):
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(lenet.MEAN, lenet.STD)])
    ds = datasets.ImageFolder(str(folder / "train"), transform=tf)
    if limit:
        ds = torch.utils.data.Subset(ds, torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:limit])
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                     persistent_workers=False)
    m, opt = model_and_opt()
    m.train()
    t = time.perf_counter()
    for x, y in dl:
        step(m, opt, x, y)
    return time.perf_counter() - t


def grader_loop(images, labels, batch_size):
    m, _ = model_and_opt()
    empty = images[:1], labels[:1]
    t = time.perf_counter()
    lenet.train(m, images, labels, *empty, epochs=1, batch_size=batch_size, optimizer="sgd", lr=0.1, momentum=0.9,
                weight_decay=0.0, seed=0)
    return time.perf_counter() - t


def bare(images, labels, batch_size):
    x_all = lenet.normalise(images)  # (N, 3, 32, 32) float, done before the clock starts
    m, opt = model_and_opt()
    m.train()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    for i in range(0, len(labels), batch_size):
        idx = order[i:i + batch_size]
        step(m, opt, x_all[idx], labels[idx])
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(data.default_data_dir()))
    p.add_argument("--cache", default=str(data.default_cache_dir()))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=0)
    a = p.parse_args()
    found = data.locate(Path(a.data))
    if found is None or found[0] != "image-folder":
        sys.exit(f"{a.data}: needs an image-folder copy of CIFAR-10 (DIR/train/<class>/*.jpg)")
    ds = data.load(a.data, a.cache, download=False)
    images, labels = ds.train_images, ds.train_labels
    if a.limit:
        keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:a.limit]
        images, labels = images[keep], labels[keep]
    images = images.clone()  # resident, not memory-mapped, like the loaded data in a run
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"{len(labels)} images, batch {a.batch_size}, torch threads {torch.get_num_threads()}, "
          f"DataLoader workers {a.workers}")
    tc = conventional(Path(found[1]), a.batch_size, a.workers, a.limit)
    print(f"conventional  {tc:6.2f} s")
    tg = grader_loop(images, labels, a.batch_size)
    print(f"grader        {tg:6.2f} s")
    tb = bare(images, labels, a.batch_size)
    print(f"bare          {tb:6.2f} s")
    print(f"grader / conventional  {tg / tc:.2f}x   (goal <= 0.5x)")
    print(f"grader / bare          {tg / tb:.2f}x   (goal <= 1.1x)")


if __name__ == "__main__":
    main()
