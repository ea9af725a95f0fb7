"""LeNet-5 for CIFAR-10 with a pluggable norm layer, and the course's training loop.

Trusted code that runs in both processes: the parent trains the no-BN and reference-BN
baselines with it; the sandboxed worker wraps the student's BatchNorm2d in the same network
and loop. It must never import reference.batchnorm (the worker would then hold the answer):
the norm layer comes in as a factory `norm(num_features, num_dims)`.
"""
import math
import time

import torch
from torch import nn
import torch.nn.functional as F

# CIFAR-10 channel statistics (of the training images); whole batches are normalised with them
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class LeNet5(nn.Module):
    # as in the course (d2l's LeNet with BN): norm after each conv and each hidden linear
    # layer, before the sigmoid
    def __init__(self, norm=None, num_classes=10, activation="sigmoid"):
        super().__init__()
        ident = lambda c, d: nn.Identity()  # noqa: E731
        norm = norm or ident
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.norm1 = norm(6, 4)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.norm2 = norm(16, 4)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.norm3 = norm(120, 2)
        self.fc2 = nn.Linear(120, 84)
        self.norm4 = norm(84, 2)
        self.fc3 = nn.Linear(84, num_classes)
        self.act = torch.sigmoid if activation == "sigmoid" else F.relu

    NORMS = ("norm1", "norm2", "norm3", "norm4")
    WEIGHTS = ("conv1", "conv2", "fc1", "fc2", "fc3")

    def forward(self, x):  # (N, 3, 32, 32)
        x = avg_pool2(self.act(self.norm1(self.conv1(x))))  # (N, 6, 14, 14)
        x = avg_pool2(self.act(self.norm2(self.conv2(x))))  # (N, 16, 5, 5)
        x = x.flatten(1)  # (N, 400)
        x = self.act(self.norm3(self.fc1(x)))  # (N, 120)
        x = self.act(self.norm4(self.fc2(x)))  # (N, 84)
        return self.fc3(x)  # (N, 10)

    def weight_state(self):
        # conv/linear parameters only: the norm layers' state is read by role, not by name
        return {f"{m}.{k}": v.detach().clone() for m in self.WEIGHTS for k, v in getattr(self, m).state_dict().items()}

    def load_weight_state(self, state):
        for m in self.WEIGHTS:
            getattr(self, m).load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(m + ".")})


class _AvgPool2(torch.autograd.Function):
    # F.avg_pool2d(x, 2) on even sizes, as two pairwise sums: its CPU kernel and backward took
    # ~15% of a LeNet-5 step's CPU time here, these about a third of that. Each output is the
    # mean of its 2x2 window (summed as (a + b) + (c + d), not ((a + b) + c) + d: the same value
    # up to the last bit), and each input's gradient is a quarter of its window's, as torch's.
    @staticmethod
    def forward(ctx, x):
        n, c, h, w = x.shape
        s = x.reshape(n, c, h, w // 2, 2)
        s = s[..., 0] + s[..., 1]  # (N, C, H, W/2)
        s = s.view(n, c, h // 2, 2, w // 2)
        return (s[:, :, :, 0] + s[:, :, :, 1]).mul_(0.25)

    @staticmethod
    def backward(ctx, g):
        n, c, h2, w2 = g.shape
        return (g * 0.25)[:, :, :, None, :, None].expand(n, c, h2, 2, w2, 2).reshape(n, c, 2 * h2, 2 * w2)


def avg_pool2(x):
    """F.avg_pool2d(x, 2), faster on the CPU for the even sizes LeNet-5 has."""
    if x.dim() == 4 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
        return _AvgPool2.apply(x)
    return F.avg_pool2d(x, 2)


_MALLOC = []


def steady_malloc():
    """Keep glibc from handing each step's activations back to the kernel. A LeNet-5 step
    allocates and frees a few dozen 0.2-2.5 MB tensors; with glibc's default (dynamic) thresholds
    many of them are mmap'ed and unmapped, or trimmed off the heap, every step, and touching the
    fresh pages again costs page faults: on one CPU thread here a sixth of an epoch's CPU time
    was system time, and the epoch took a third longer than with the thresholds pinned.
    Pinned thresholds keep those blocks on the heap and reuse them. Once per process; where the
    C library is not glibc (macOS, Windows, musl) nothing happens."""
    if _MALLOC:
        return
    _MALLOC.append(True)
    try:
        import ctypes
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks under 32 MB from the heap (the data sets stay mmap'ed)
        mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: give the heap's top back only beyond 256 MB free
    except (OSError, AttributeError):
        pass


_AFFINE = {}


def normalise(images_u8, device=None):
    # (B, 3, 32, 32) uint8 -> float, normalised per channel; done per batch, never per sample.
    # (x / 255 - mean) / std folded into one shift and one scale: two passes instead of three
    x = images_u8.to(device=device, non_blocking=True).float()
    key = x.device
    if key not in _AFFINE:
        mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
        _AFFINE[key] = ((255.0 * mean).float().to(key), (1.0 / (255.0 * std)).float().to(key))
    shift, scale = _AFFINE[key]
    return x.sub_(shift).mul_(scale)


def plain_sgd_steps(model, xs, ys, lr):
    """Plain SGD over (x, y) batches; the per-step losses. Updates exactly model.parameters()."""
    opt = SGD(model.parameters(), lr=lr)
    losses = []
    model.train()
    for x, y in zip(xs, ys):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


class SGD:
    """torch.optim.SGD's update (dampening 0, no Nesterov), without its import: the first
    torch.optim optimiser in a process imports torch._dynamo, 2-4 s here, paid again by every
    sandboxed worker."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = [p for p in params]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers = [None] * len(self.params)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            d = p.grad
            if self.weight_decay:
                d = d.add(p, alpha=self.weight_decay)
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = d.detach().clone()
                else:
                    self.buffers[i].mul_(self.momentum).add_(d)
                d = self.buffers[i]
            p.add_(d, alpha=-self.lr)


def make_optimizer(model, name, lr, momentum, weight_decay):
    if name == "sgd":
        return SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimiser {name}")


@torch.no_grad()
def evaluate(model, images, labels, batch_size=1000, device=None):
    """(mean cross-entropy, accuracy) of model in eval mode."""
    steady_malloc()
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(labels), batch_size):
        x = normalise(images[i:i + batch_size], device)
        y = labels[i:i + batch_size].to(x.device)
        logits = model(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = max(len(labels), 1)
    return total_loss / n, correct / n


def train(model, train_images, train_labels, val_images, val_labels, *, epochs, batch_size, optimizer, lr,
          momentum, weight_decay, seed, device=None, progress=None, name="run"):
    """Train in place. Returns {"train_loss": [per epoch], "val_loss": [per epoch], "seconds"}.

    The batch order comes from `seed` alone, so runs with the same seed see the same batches.
    """
    steady_malloc()
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(train_labels)
    steps = math.ceil(n / batch_size)
    history = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    t0 = time.monotonic()
    for epoch in range(epochs):
        model.train()
        # the order is drawn on the CPU (the same batches on every device) and indexes the images
        # where they are: on a GPU no host round trip per step
        order = torch.randperm(n, generator=gen).to(train_labels.device)
        # the loss summed in float64 on the device, as Python floats would (float32 loss widened,
        # times the batch size, added): read back only for the progress line and the epoch's mean
        running = torch.zeros((), dtype=torch.float64, device=device if device is not None else train_images.device)
        seen = 0
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = normalise(train_images[idx], device)
            y = train_labels[idx].to(x.device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach().double() * len(idx)
            seen += len(idx)
            if progress is not None and (step % 20 == 0 or step == steps - 1):
                progress(name, epoch, epochs, step, steps, float(running) / seen, time.monotonic() - t0)
        val_loss, val_acc = evaluate(model, val_images, val_labels, device=device)
        history["train_loss"].append(float(running) / max(seen, 1))
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
    history["seconds"] = time.monotonic() - t0
    return history
