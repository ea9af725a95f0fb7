"""Framing of messages between the grader and a sandboxed worker (both sides: the grader and,
mounted read-only, the worker).

A message is a dict of str/int/float/bool/None, lists, dicts and tensors. It travels as a JSON
header, in which every tensor is replaced by {"__tensor__": i, "dtype", "shape"}, followed by
the tensors' raw bytes. Nothing is ever unpickled: whatever the worker sends can only become
JSON values and dense CPU tensors of a known dtype. (torch.load(weights_only=True) would be safe
too, but its pure-Python unpickler cost ~4 ms a message, a quarter of a grading.)

The grader treats what comes back as hostile: sends and receives have deadlines (a worker that
stops reading cannot hang the grader), sizes are capped before anything is read, and a tensor's
declared shape and dtype must account for its payload exactly before it is built.

ROLE_NAMES is the other fact both sides share: the roles of a module's state in the worker's
replies and the attribute names each may have.

A channel is a file descriptor (a Unix socket: the zygote's workers) or a socket object (a
loopback socket: spawned workers, grader/sandbox/spawned.py; on Windows a socket is not a file
descriptor, and select() waits only on sockets there).
"""
import ctypes
import json
import os
import select
import struct
import time

import torch

HEADER = struct.Struct("!QQ")  # JSON length, payload length
DTYPES = {str(d).replace("torch.", ""): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16, torch.int32,
    torch.int64, torch.bool, torch.complex64, torch.complex128)}


ITEMSIZE = {name: torch.empty((), dtype=d).element_size() for name, d in DTYPES.items()}

# the roles of a module's state in the worker's replies, and the attribute names each may have:
# the template's first, then torch.nn's, so a reasonable variant still grades
ROLE_NAMES = {
    "gamma": ("gamma", "weight"),
    "beta": ("beta", "bias"),
    "moving_mean": ("moving_mean", "running_mean"),
    "moving_var": ("moving_var", "running_var"),
}


class ChannelClosed(Exception):
    pass


class ChannelTimeout(Exception):
    pass


class MessageTooLarge(Exception):
    pass


class BadMessage(ValueError):
    pass


def _flatten(obj, tensors):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        name = str(t.dtype).replace("torch.", "")
        if name not in DTYPES:
            t, name = t.to(torch.float64), "float64"
        tensors.append(t)
        return {"__tensor__": len(tensors) - 1, "dtype": name, "shape": list(t.shape)}
    if isinstance(obj, dict):
        return {str(k): _flatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot send a {type(obj).__name__}")


def encode(msg: dict) -> bytes:
    tensors = []
    flat = _flatten(msg, tensors)
    # straight from the tensor's memory (contiguous, on the CPU): numpy is not always installed
    blobs = [ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b"" for t in tensors]
    head = json.dumps({"m": flat, "s": [len(b) for b in blobs]}).encode()
    payload = b"".join(blobs)
    return HEADER.pack(len(head), len(payload)) + head + payload


def _rebuild(obj, tensors):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            try:
                return tensors[obj["__tensor__"]](obj["dtype"], obj["shape"])
            except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as e:
                raise BadMessage(f"bad tensor: {e}") from None
        return {k: _rebuild(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rebuild(v, tensors) for v in obj]
    return obj


def decode(head: bytes, payload: bytes) -> dict:
    try:
        outer = json.loads(head)
        sizes = [int(s) for s in outer["s"]]
        msg = outer["m"]
    except (ValueError, KeyError, TypeError) as e:
        raise BadMessage(f"bad header: {e}") from None
    if sum(sizes) != len(payload) or any(s < 0 for s in sizes):
        raise BadMessage("payload sizes do not add up")
    views, at = [], 0
    for s in sizes:
        views.append(payload[at:at + s])
        at += s

    def make(i):
        def build(dtype, shape):
            dt = DTYPES[dtype]
            shape = [int(x) for x in shape]
            buf = views[i]
            t = torch.frombuffer(bytearray(buf), dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
            if any(d < 0 for d in shape) or len(shape) > 16:
                raise BadMessage("bad tensor shape")
            numel = 1
            for d in shape:
                numel *= d
            # checked before anything is allocated: a tiny reply must not declare a huge tensor
            if numel * ITEMSIZE[dtype] != len(buf):
                raise BadMessage(f"tensor of shape {shape} and dtype {dtype} does not match its {len(buf)} bytes")
            return t.view(dt).reshape(shape) if buf else torch.empty(shape, dtype=dt)
        return build
    msg = _rebuild(msg, [make(i) for i in range(len(sizes))])
    if not isinstance(msg, dict):
        raise BadMessage(f"message is a {type(msg).__name__}, not a dict")
    return msg


def _write(ch, data) -> int:
    return os.write(ch, data) if isinstance(ch, int) else ch.send(data)


def _read(ch, n: int) -> bytes:
    return os.read(ch, n) if isinstance(ch, int) else ch.recv(n)


def send(fd, msg: dict, deadline: float | None = None) -> None:
    view = memoryview(encode(msg))
    if deadline is None and not isinstance(fd, int):
        fd.sendall(view)
        return
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            _, ready, _ = select.select([], [fd], [], max(left, 0.0))
            if not ready:
                raise ChannelTimeout()
            try:
                n = _write(fd, view[:1 << 16])  # at most what a writable socket surely takes
            except BlockingIOError:
                continue
        else:
            n = _write(fd, view)
        view = view[n:]


def _read_exact(fd, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise ChannelTimeout()
        try:
            chunk = _read(fd, min(n - got, 1 << 20))
        except BlockingIOError:  # a non-blocking socket that select() called ready too early
            continue
        except ConnectionResetError:  # Windows reports a killed peer as a reset, not as EOF
            raise ChannelClosed() from None
        if not chunk:
            raise ChannelClosed()
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd, deadline: float | None = None, max_bytes: int = 512 << 20) -> dict:
    head_len, payload_len = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if head_len > (16 << 20) or payload_len > max_bytes:
        raise MessageTooLarge(head_len + payload_len)
    head = _read_exact(fd, head_len, deadline)
    payload = _read_exact(fd, payload_len, deadline) if payload_len else b""
    return decode(head, payload)
