"""A spawned worker's start (spawned worker process: a fresh, unconfined interpreter).

grader/sandbox/spawned.py starts `python -I -B` with this package loaded by path; no fork, no
namespaces, no descriptor passing, so it runs on Windows and macOS as on Linux. The worker
imports torch, connects back to the grader over a loopback socket and proves it is the
process the grader started with the token the grader wrote on its stdin. Then it takes the
per-submission setup (working folder, threads, limits), applies what the platform allows, and
from there on is the same worker as the zygote's: worker.serve loads the submission and answers
requests. Its stdout and stderr are the grader's capture file.

It confines nothing: a student checking their own code on their own laptop is the only use.
"""
import os
import socket
import sys

import torch

from . import wire, worker


def _limits(limits: dict) -> None:
    # what the platform enforces; the grader says which in the results (spawned.py), and the
    # grader's own deadline kills the whole process tree whatever happens here
    resource = worker.resource
    if resource is None:
        return  # Windows: the grader's job object holds the limits
    worker._limit(resource.RLIMIT_CORE, 0)
    worker._limit(resource.RLIMIT_FSIZE, limits["file_bytes"])
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG, visibly
    worker._limit(resource.RLIMIT_CPU, int(limits["cpu_seconds"]))
    if sys.platform.startswith("linux"):
        # macOS accepts no address-space limit it would enforce, and has no /proc to count
        # the user's processes by
        if not limits.get("cuda"):
            worker._limit(resource.RLIMIT_AS, worker._vm_bytes() + limits["memory_bytes"])
        worker._limit(resource.RLIMIT_NPROC, worker._user_processes(os.getuid()) + limits["processes"])


def _stdio() -> None:
    # stdin carried the token; the student's code reads an empty one, as in the sandbox
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(0, "r", closefd=False)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)


def _setup(req: dict) -> None:
    workdir = req["workdir"]  # made and removed by the grader
    os.chdir(workdir)
    # the grader passed a short list of variables (spawned.py); temporary files go to the
    # worker's folder, which the grader removes
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "TEMP": workdir, "TMP": workdir,
                       "OMP_NUM_THREADS": str(req["threads"])})
    _limits(req["limits"])
    torch.set_num_threads(max(1, int(req["threads"])))


def main(port: int) -> None:
    token = sys.stdin.buffer.readline().strip()
    _stdio()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.settimeout(None)
    sock.sendall(token + b"\n")
    wire.send(sock, {"op": "hello", "pid": os.getpid(), "torch": torch.__version__,
                     "python": sys.version.split()[0]})
    req = wire.recv(sock)
    try:
        _setup(req)
    except BaseException as e:  # the grader sees a worker that could not set itself up
        wire.send(sock, {"ok": False, "error": f"the worker could not be set up: {e}"})
        return
    wire.send(sock, {"ok": True})
    worker.serve(sock, req["workdir"])
