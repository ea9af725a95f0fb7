"""CIFAR-10 for the training stage (parent process): find it, decode it once, cache it.

Layouts accepted for DIR (--data):
  torchvision's   DIR/cifar-10-batches-py/{data_batch_1..5,test_batch}; downloaded there by
                  torchvision when missing and the network allows it
  image folder    DIR/{train,test}/<class>/*.{jpg,jpeg,png}, or that one level down
                  (DIR/cifar10-jpeg/{train,test}/..., as the course's JPEG copy unpacks)
Decoded images are cached as uint8 tensors in CACHE/cifar10-<key>.pt, where the key is a
hash of the source: the pickled batches' bytes; for an image folder every file's name, each
class folder's mtime and the size and mtime of every 50th file (hashing, or even stat-ing,
60,000 files would cost more than the cache saves). Delete the cache file to force a decode.
A cached start takes ~0.2 s; decoding the JPEG copy takes ~10 s once. Decoding holds the
cache's lock (CACHE/.lock), so the tasks of a job array never write one entry together.
`bn-grade --prepare` leaves CACHE/prepared.json: tasks given that cache never download.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import pickle
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from grader.errors import UsageError
from grader.output import files

IMAGE_EXT = (".jpg", ".jpeg", ".png")
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CACHE_VERSION = "1"


class DataError(UsageError):
    """One line for the user: which path, what is wrong, what to do."""


@dataclass
class Dataset:
    kind: str  # "torchvision" | "image-folder"
    path: str
    train_images: torch.Tensor  # (N, 3, 32, 32) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list
    key: str
    cache_file: str
    cached: bool


PREPARED = "prepared.json"  # written by `bn-grade --prepare` (cli.py) once data and baselines are in


def default_data_dir() -> Path:
    return Path(os.environ.get("BN_GRADE_DATA", "data"))


def default_cache_dir(platform: str | None = None, environ=None) -> Path:
    """$BN_GRADE_CACHE, else the platform's cache folder: %LOCALAPPDATA%\\bn-grader\\Cache on
    Windows, ~/Library/Caches/bn-grader on macOS, $XDG_CACHE_HOME or ~/.cache on Linux."""
    env = os.environ if environ is None else environ
    platform = platform or sys.platform
    if env.get("BN_GRADE_CACHE"):
        return Path(env["BN_GRADE_CACHE"])
    home = env.get("USERPROFILE" if platform.startswith("win") else "HOME") or os.path.expanduser("~")
    if platform.startswith("win"):
        base = env.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return Path(base) / "bn-grader" / "Cache"
    if platform == "darwin":
        return Path(home) / "Library" / "Caches" / "bn-grader"
    return Path(env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")) / "bn-grader"


def _is_image_folder(p: Path) -> bool:
    return (p / "train").is_dir() and (p / "test").is_dir()


def locate(root: Path):
    """(kind, path) of the data set under root, or None."""
    if (root / "cifar-10-batches-py").is_dir():
        return "torchvision", root / "cifar-10-batches-py"
    if root.name == "cifar-10-batches-py" and (root / "test_batch").exists():
        return "torchvision", root
    if _is_image_folder(root):
        return "image-folder", root
    if root.is_dir():
        subs = [p for p in sorted(root.iterdir()) if p.is_dir() and _is_image_folder(p)]
        if len(subs) == 1:
            return "image-folder", subs[0]
    return None


def _download(root: Path):
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        raise DataError(f"{root}: no CIFAR-10 here and torchvision is not importable ({e})") from None
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:
        raise DataError(f"{root}: no CIFAR-10 found (expected {root}/cifar-10-batches-py or {root}/{{train,test}}/<class>/"
                        f"*.jpg) and downloading it failed ({type(e).__name__}); pass --data DIR with a copy, "
                        "or --no-train to skip training") from None
    finally:
        socket.setdefaulttimeout(old)


def _image_files(split_dir: Path, digest, classes=None):
    """(files, labels, classes); feeds every file's name, size and mtime into digest.
    Plain strings and scandir: pathlib objects for 60,000 files cost most of a second."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing (an image-folder data set needs train/ and test/)")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if classes is not None and found != classes:
        raise DataError(f"{split_dir}: classes {found} differ from train/'s {classes}")
    files, labels = [], []
    for i, c in enumerate(found):
        folder = os.path.join(split_dir, c)
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if e.name.lower().endswith(IMAGE_EXT)), key=lambda e: e.name)
        if not entries:
            raise DataError(f"{folder}: no .jpg/.jpeg/.png images")
        # every name, the folder's mtime (files added, removed or replaced), and size+mtime of
        # every 50th file (edited in place); a stat of each file would cost ~0.3 s here
        digest.update(f"{split_dir.name}/{c}\0{os.stat(folder).st_mtime_ns}\n".encode())
        for j, e in enumerate(entries):
            digest.update(e.name.encode() + b"\0")
            if j % 50 == 0:
                st = e.stat()
                digest.update(f"{st.st_size}\0{st.st_mtime_ns}\n".encode())
        files += [e.path for e in entries]
        labels += [i] * len(entries)
    if not files:
        raise DataError(f"{split_dir}: no class folders with images")
    return files, labels, found


def _source_digest(kind):
    return hashlib.sha256(f"v{CACHE_VERSION}:{kind}".encode())


def _batches_key(path: Path) -> str:
    h = _source_digest("torchvision")
    for name in BATCHES:
        p = path / name
        if not p.exists():
            raise DataError(f"{p}: missing (a torchvision CIFAR-10 folder holds data_batch_1..5 and test_batch)")
        h.update(name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _decode_folder(files):
    # torchvision's batched JPEG decoder is ~7x faster than PIL here (0.08 vs 0.6 ms an image);
    # it is deprecated from torchvision 0.29 on, so PIL takes over where it is gone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import ImageReadMode, decode_image, decode_jpeg
        except ImportError:
            return _decode_pil(files)
        raw = []
        for f in files:
            with open(f, "rb") as fh:
                raw.append(torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8))
        out = [None] * len(files)
        jpeg = [i for i, f in enumerate(files) if f.lower().endswith((".jpg", ".jpeg"))]
        try:
            if jpeg:
                for i, img in zip(jpeg, decode_jpeg([raw[i] for i in jpeg], mode=ImageReadMode.RGB)):
                    out[i] = img
        except RuntimeError:
            for i in jpeg:  # find the broken file to name it
                try:
                    out[i] = decode_jpeg(raw[i], mode=ImageReadMode.RGB)
                except RuntimeError:
                    raise DataError(f"{files[i]}: not a readable JPEG image") from None
        for i, f in enumerate(files):
            if out[i] is None:
                try:
                    out[i] = decode_image(raw[i], mode=ImageReadMode.RGB)
                except RuntimeError:
                    raise DataError(f"{f}: not a readable image") from None
    return _stack(files, out)


def _decode_pil(files):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1))
        except (UnidentifiedImageError, OSError):
            raise DataError(f"{f}: not a readable image") from None
    return _stack(files, out)


def _stack(files, images):
    for f, img in zip(files, images):
        if tuple(img.shape) != (3, 32, 32):
            raise DataError(f"{f}: image is {tuple(img.shape[1:])}, CIFAR-10 images are 32x32")
    return torch.stack(images)


class _ArraysOnly(pickle.Unpickler):
    # the batches are dicts of numpy arrays and lists: refuse anything else a file could name
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


def _read_batch(p: Path):
    try:
        with open(p, "rb") as f:
            d = _ArraysOnly(f, encoding="latin1").load()
        data = torch.as_tensor(d["data"]).reshape(-1, 3, 32, 32)
        labels = torch.as_tensor(d["labels"], dtype=torch.int64)
    except (pickle.UnpicklingError, KeyError, EOFError, ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{p}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if data.dtype != torch.uint8 or len(labels) != len(data):
        raise DataError(f"{p}: not a CIFAR-10 batch (unexpected contents)")
    return data, labels


def _decode_torchvision(path: Path):
    parts = [_read_batch(path / n) for n in BATCHES[:5]]
    test = _read_batch(path / "test_batch")
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = path / "batches.meta"
    if meta.exists():
        try:
            with open(meta, "rb") as f:
                classes = list(_ArraysOnly(f, encoding="latin1").load()["label_names"])
        except Exception:
            pass
    return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), test[0], test[1], classes)


def load(root: str | Path | None = None, cache_dir: str | Path | None = None, download: bool = True) -> Dataset:
    root = Path(root) if root is not None else default_data_dir()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = locate(root)
    if found is None:
        if root.exists() and not root.is_dir():
            raise DataError(f"{root}: not a folder")
        if not download:
            raise DataError(f"{root}: no CIFAR-10 found (expected {root}/cifar-10-batches-py or "
                            f"{root}/{{train,test}}/<class>/*.jpg); pass --data DIR, or --no-train to skip training")
        _download(root)
        found = locate(root)
    kind, path = found
    train_files = test_files = train_labels = test_labels = classes = None
    if kind == "image-folder":
        h = _source_digest(kind)
        train_files, train_labels, classes = _image_files(path / "train", h)
        test_files, test_labels, _ = _image_files(path / "test", h, classes)
        key = h.hexdigest()
    else:
        key = _batches_key(path)
    cache_file = cache_dir / f"cifar10-{key[:24]}.pt"
    # the tasks of a job array share one cache: one decodes while the others wait, then read it
    with files.locked(cache_dir):
        return _load_or_decode(kind, path, key, cache_file, cache_dir, train_files, test_files, train_labels,
                               test_labels, classes)


def _load_or_decode(kind, path, key, cache_file, cache_dir, train_files, test_files, train_labels, test_labels,
                    classes):
    if cache_file.exists():
        try:
            d = torch.load(cache_file, weights_only=True, mmap=True)
            return Dataset(kind, str(path), d["train_images"], d["train_labels"], d["test_images"], d["test_labels"],
                           list(d["classes"]), key, str(cache_file), True)
        except Exception:
            pass  # a damaged cache is rebuilt
    if kind == "torchvision":
        tr_x, tr_y, te_x, te_y, classes = _decode_torchvision(path)
    else:
        tr_x = _decode_folder(train_files)
        te_x = _decode_folder(test_files)
        tr_y = torch.tensor(train_labels, dtype=torch.int64)
        te_y = torch.tensor(test_labels, dtype=torch.int64)
    blob = {"train_images": tr_x.contiguous(), "train_labels": tr_y, "test_images": te_x.contiguous(),
            "test_labels": te_y, "classes": list(classes)}
    try:
        buf = io.BytesIO()
        torch.save(blob, buf)
        # atomically, readable by the group as the umask says (a shared cache); no temporary
        # file is left behind when the write fails
        files.write_atomic(cache_file, buf.getbuffer())
    except OSError as e:
        raise DataError(f"{cache_dir}: cannot write the decoded-data cache ({e.strerror}); pass --cache DIR") from None
    return Dataset(kind, str(path), tr_x, tr_y, te_x, te_y, list(classes), key, str(cache_file), False)


def split(n: int, val_fraction: float, seed: int):
    """(train_idx, val_idx): a seeded hold-out of the training set for the validation curve."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values
