"""Framing of messages between the parent and the sandboxed worker (used on both sides).

A message is a dict of str/int/float/bool/None, lists and tensors. It is written with
torch.save and read with torch.load(weights_only=True), whose unpickler refuses anything but
those types: whatever the worker sends, the parent never unpickles arbitrary objects.
"""
import io
import os
import select
import struct
import time

import torch

HEADER = struct.Struct("!Q")


class ChannelClosed(Exception):
    pass


class ChannelTimeout(Exception):
    pass


class MessageTooLarge(Exception):
    pass


def encode(msg: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(msg, buf)
    data = buf.getvalue()
    return HEADER.pack(len(data)) + data


def decode(data: bytes) -> dict:
    msg = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if not isinstance(msg, dict):
        raise ValueError(f"message is a {type(msg).__name__}, not a dict")
    return msg


def send(fd: int, msg: dict) -> None:
    view = memoryview(encode(msg))
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise ChannelTimeout()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise ChannelClosed()
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd: int, deadline: float | None = None, max_bytes: int = 256 << 20) -> dict:
    (size,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if size > max_bytes:
        raise MessageTooLarge(size)
    return decode(_read_exact(fd, size, deadline))
