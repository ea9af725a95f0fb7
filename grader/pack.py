"""Check packs: the file a student edition grades against (parent process; both editions read
it, the full edition's grader/packmaker.py writes it).

A pack holds, for one rubric's seed, every answer the checks ask the oracle (checks/oracle.py):
per (check id, label, op) the inputs and the outputs of the expected value and of every formula
variant the mistake search may try, the integration check's reference trajectory, the rubric
itself, and the baseline training runs (no BN, reference BN) per device type. No code: JSON and
raw tensor bytes, framed as grader/sandbox/inside/wire.py frames a message (never unpickled),
each distinct tensor stored once and referenced as {"__blob__": i}.

File: b"BNPACK <format>\\n", the SHA-256 of the body in hex and b"\\n", then the body: the
wire-encoded message, zlib-compressed.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from grader.errors import UsageError
from grader.output.files import write_atomic
from grader.sandbox.inside import wire

FORMAT = 1
MAGIC = b"BNPACK "
MAX_BODY = 256 << 20  # a pack is a few MB: anything near this is not one


class PackError(UsageError):
    """The file is not a usable pack (one line naming it and why)."""


@dataclass
class Pack:
    meta: dict
    rubric_text: str
    entries: dict  # "check|label|op" -> {"inputs": {...}, "out": {variant key: answer}}
    baselines: dict = field(default_factory=dict)  # device type -> {"key", "config", "runs": {name: Run fields}}
    path: str = ""
    sha256: str = ""
    size: int = 0

    def describe(self) -> str:
        return f"{Path(self.path).name or 'pack'}, seed {self.meta.get('seed')}"


def _share(obj, blobs, index):
    # each distinct tensor once: many variants give the same output, many ops the same inputs
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        key = (str(t.dtype), tuple(t.shape), hashlib.sha256(wire.encode({"t": t})).digest())
        if key not in index:
            index[key] = len(blobs)
            blobs.append(t)
        return {"__blob__": index[key]}
    if isinstance(obj, dict):
        return {k: _share(v, blobs, index) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_share(v, blobs, index) for v in obj]
    return obj


def _unshare(obj, blobs):
    if isinstance(obj, dict):
        if "__blob__" in obj:
            i = obj["__blob__"]
            if not isinstance(i, int) or not 0 <= i < len(blobs):
                raise ValueError(f"bad tensor reference {i!r}")
            return blobs[i]
        return {k: _unshare(v, blobs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unshare(v, blobs) for v in obj]
    return obj


def encode(pack: Pack) -> bytes:
    blobs = []
    entries = _share(pack.entries, blobs, {})
    msg = {"format": FORMAT, "meta": pack.meta, "rubric": pack.rubric_text, "entries": entries, "blobs": blobs,
           "baselines": pack.baselines}
    body = zlib.compress(wire.encode(msg), 9)
    return MAGIC + str(FORMAT).encode() + b"\n" + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def write(pack: Pack, path) -> Pack:
    data = encode(pack)
    path = Path(path)
    write_atomic(path, data)
    os.chmod(path, 0o644)  # published with the template: readable by everyone
    return read(path)


def read(path) -> Pack:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PackError(f"{path}: no such pack file") from None
    except OSError as e:
        raise PackError(f"{path}: cannot read: {e.strerror}") from None
    if not data.startswith(MAGIC):
        raise PackError(f"{path}: not a check pack (made by `bn-grade pack`)")
    try:
        first, digest, body = data.split(b"\n", 2)
        version = int(first[len(MAGIC):])
    except ValueError:
        raise PackError(f"{path}: damaged pack header") from None
    if version != FORMAT:
        raise PackError(f"{path}: pack format {version}; this bn-grade reads format {FORMAT} (update one of them)")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise PackError(f"{path}: damaged pack (its SHA-256 does not match)")
    try:
        z = zlib.decompressobj()
        raw = z.decompress(body, MAX_BODY)
        if z.unconsumed_tail:
            raise PackError(f"{path}: pack larger than {MAX_BODY >> 20} MB")
        head_len, payload_len = wire.HEADER.unpack_from(raw)
        at = wire.HEADER.size
        msg = wire.decode(raw[at:at + head_len], raw[at + head_len:at + head_len + payload_len])
    except (zlib.error, wire.BadMessage, ValueError, struct.error, KeyError) as e:
        raise PackError(f"{path}: damaged pack: {e}") from None
    try:
        entries = _unshare(msg["entries"], msg["blobs"])
        return Pack(msg["meta"], msg["rubric"], entries, msg.get("baselines") or {}, str(path), digest.decode(),
                    len(data))
    except (KeyError, ValueError, TypeError) as e:
        raise PackError(f"{path}: damaged pack: {e}") from None


def rubric_for(pack: Pack, rubric_path=None, known_checks=None):
    """The rubric to grade with against this pack: the one it carries, or rubric_path when it has
    the pack's seed and conventions (the answers are only right for those). PackError otherwise;
    a broken rubric file raises the rubric's own error."""
    from grader import rubric as rubric_mod
    if rubric_path:
        rubric = rubric_mod.load(rubric_path, known_checks=known_checks)
    else:
        with tempfile.TemporaryDirectory(prefix="bn-grade-pack-") as d:
            p = Path(d) / "rubric.yaml"
            p.write_text(pack.rubric_text, encoding="utf-8")
            rubric = rubric_mod.load(p, known_checks=known_checks)
        rubric.path = f"{pack.path} (its rubric)"
    for key in ("seed", "running_var", "grad_mode_only"):
        if getattr(rubric, key) != pack.meta.get(key):
            raise PackError(f"{pack.path}: made for {key} {pack.meta.get(key)!r}, the rubric has "
                            f"{getattr(rubric, key)!r}")
    return rubric
