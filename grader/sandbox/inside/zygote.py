"""The warm process inside the sandbox (sandboxed zygote process).

engine.py starts it with exec, as a fresh interpreter in a bubblewrap sandbox with an empty
environment; it imports torch once (the ~3 s that no submission pays again) and then, for each
"spawn" from the grader, forks one worker that isolates itself further (worker.py: its own
user, mount, PID, network and IPC namespaces). The zygote never sees a submission: the grader
sends the source straight to the worker over the worker's own socket. It runs no student code
and computes nothing, so forking it is safe for torch's thread pools.

Control messages are JSON lines on a Unix socket; a spawn carries two descriptors with it
(the worker's channel to the grader and its output capture).
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import tempfile

from . import worker

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
_libc = ctypes.CDLL(None, use_errno=True)


def _become(uid: int):
    # as root, bubblewrap leaves us CAP_SETUID/CAP_SETGID for this alone: every process of the
    # sandbox runs as the uid the grader claimed, never as root (no capability survives it)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _nested_namespaces_work() -> str:
    """'' when a worker can get its own namespaces here, else why not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        err = worker.unshare_all(os.getuid(), os.getgid())
        os.write(w, err.encode()[:500])
        os._exit(0)
    os.close(w)
    why = b""
    while True:
        chunk = os.read(r, 512)
        if not chunk:
            break
        why += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return why.decode()


def _recv(ctrl, buf):
    """(request, fds, rest of buf); (None, ...) when the grader hung up."""
    fds = []
    while b"\n" not in buf:
        msg, got, _, _ = socket.recv_fds(ctrl, 65536, 4)
        fds += got
        if not msg:
            return None, fds, b""
        buf += msg
    line, _, buf = buf.partition(b"\n")
    return json.loads(line), fds, buf


def _status(code: int) -> dict:
    # the worker's intermediate process exits 128 + N when the worker was killed by signal N
    return {"code": None, "signal": code - 128} if code >= 128 else {"code": code, "signal": None}


def main(ctrl_fd: int, isolate: bool, uid: int | None):
    if uid is not None and os.getuid() == 0:
        _become(uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle
    import torch  # noqa: F401  (the point of the zygote)
    ctrl = socket.socket(fileno=ctrl_fd)
    why = _nested_namespaces_work() if isolate else "not asked for"
    # from here on no process of ours may be read or written through /proc by another worker
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    ctrl.sendall(json.dumps({"op": "hello", "nested": why == "", "why": why, "uid": os.getuid(),
                             "torch": torch.__version__, "python": sys.version.split()[0]}).encode() + b"\n")
    live = {}  # id -> (intermediate pid, worker pid)
    buf = b""
    while True:
        req, fds, buf = _recv(ctrl, buf)
        if req is None:
            break
        if req["op"] == "spawn":
            chan, capture = fds
            if not (isolate and why == ""):
                # unconfined, the worker's folder is on the machine's /tmp: the zygote makes it
                # and removes it once the worker is gone, however it ended
                req["workdir"] = tempfile.mkdtemp(prefix="bn-grade-work-")
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    ctrl.close()
                    os.close(r)
                    worker.start(chan, capture, w, req, isolate and why == "")
                finally:
                    os._exit(70)
            os.close(w)
            os.close(chan)
            os.close(capture)
            inner = os.read(r, 32)
            os.close(r)
            live[req["id"]] = (pid, int(inner) if inner.strip().isdigit() else None, req.get("workdir"))
            ctrl.sendall(json.dumps({"op": "spawned", "id": req["id"], "ok": bool(inner.strip().isdigit())}).encode()
                         + b"\n")
        elif req["op"] == "kill":
            pid, inner, workdir = live.pop(req["id"], (None, None, None))
            reply = {"op": "killed", "id": req["id"], "code": None, "signal": None}
            if pid is not None:
                # the worker is PID 1 of its own namespace: when it dies, everything it
                # started dies with it, however it detached
                for target in (inner, pid):
                    if target:
                        try:
                            os.kill(target, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        break
                _, status = os.waitpid(pid, 0)
                reply.update(_status(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status)
                                     else 128 + os.WTERMSIG(status)))
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            ctrl.sendall(json.dumps(reply).encode() + b"\n")
    for pid, inner, workdir in live.values():
        try:
            os.kill(inner or pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    os._exit(0)
