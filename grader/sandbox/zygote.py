"""The grader's side of the sandbox: the zygote it starts and the sessions it hands out
(grader process).

`import torch` costs seconds, so a worker must not pay it again: the grader starts one warm
zygote inside the sandbox (engine.py; a fresh interpreter, started by exec, that imports torch
once) and asks it for a worker per submission. The grader starts it first thing, so the
zygote's torch import runs alongside the grader's own. A worker gets its own namespaces
(inside/worker.py); the grader sends it the submission's source and then requests over the
worker's own socket, and tells the zygote to kill it when done or out of time.

open_loaded() is the one way the grader starts a worker for a submission (grading.py, the
training stage): a Session whose worker loaded it, or LoadFailed with the status it grades with.
What the results record about the confinement comes from here (what the grader set up),
never from the worker.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

from grader.errors import LoadFailed, SandboxError  # noqa: F401 (importable from here, as always)
from grader.results import RunStatus
from grader.sandbox import engine

MAX_SOURCE = 1_000_000  # bytes: a larger .py is refused before anything parses it
MAX_REPLY = 64 << 20  # what a worker may send in one message


@dataclass
class Exit:
    code: int | None
    signal: int | None

    def describe(self):
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        if self.code is not None:
            return f"exit status {self.code}"
        return "exit status unknown"


def _mode() -> str:
    return os.environ.get("BN_GRADE_SANDBOX", "auto")


def forks() -> bool:
    """Whether the forked zygote can run here at all (Linux: memfd, fd passing, prctl, /proc);
    elsewhere every unconfined mode is a spawned worker (spawned.py)."""
    return sys.platform.startswith("linux")


def _cuda_devices() -> bool:
    return os.environ.get("CUDA_VISIBLE_DEVICES", None) != "" and os.path.exists("/dev/nvidiactl")


class Zygote:
    """mode: 'bubblewrap' (required), 'unconfined', or 'auto' (bubblewrap where it runs)."""
    HELLO_TIMEOUT = 180.0  # importing torch from a cold disk
    CONTROL_TIMEOUT = 60.0

    def __init__(self, mode: str | None = None):
        self._lock = threading.Lock()  # batch grading spawns from several threads
        self.mode = mode or _mode()
        if self.mode not in ("auto", "bubblewrap", "unconfined"):
            raise engine.EngineUnavailable(f"unknown sandbox mode {self.mode!r} (auto, bubblewrap, unconfined, "
                                           "spawned)")
        self.why_unconfined = ""
        if self.mode == "auto":
            self.why_unconfined = engine.probe()
            self.mode = "unconfined" if self.why_unconfined else "bubblewrap"
        elif self.mode == "unconfined":
            self.why_unconfined = "asked for (--unconfined)"
        self.restarts = 0
        self._ids = 0
        self._start()

    def _start(self):
        ours, theirs = socket.socketpair()
        if self.mode == "bubblewrap":
            self.launch = engine.bubblewrap(theirs.fileno(), _cuda_devices())
        else:
            self.launch = engine.unconfined(theirs.fileno())
        self.proc = engine.start(self.launch)
        theirs.close()
        self._ctrl = ours
        self._buf = b""
        self.hello = None

    @property
    def confined(self) -> bool:
        return self.mode == "bubblewrap"

    def facts(self) -> dict:
        """How a worker is confined, as set up by the grader (for every result)."""
        self._await_hello()
        nested = bool(self.hello and self.hello.get("nested"))
        if self.confined:
            iso = ("own user, mount, PID, network, IPC and UTS namespaces per submission" if nested else
                   f"one sandbox shared by this grader's workers (per-submission namespaces refused: "
                   f"{self.hello.get('why', '?')})")
            return {"engine": self.launch.engine, "confined": True, "isolation": iso, "user": self.launch.user,
                    "network": "none (own network namespace)", "network_isolated": True,
                    "filesystem": "read-only Python runtime and torch, private size-capped /tmp; no grader files",
                    "limits": "rlimits (address space, CPU time, file size, processes) and tmpfs sizes; "
                              "no cgroup", "environment": "empty but PATH, HOME, LANG, TMPDIR"}
        return {"engine": self.launch.engine, "confined": False, "isolation": "none", "user": self.launch.user,
                "network": "available (unconfined)", "network_isolated": False, "filesystem": "the user's own",
                "limits": "rlimits only", "why_unconfined": self.why_unconfined}

    def _readline(self, timeout):
        self._ctrl.settimeout(timeout)
        while b"\n" not in self._buf:
            chunk = self._ctrl.recv(65536)
            if not chunk:
                raise ConnectionError("the sandbox's zygote closed its socket")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _startup_error(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except Exception:
            pass
        try:
            self.proc.errors.seek(0)
            text = self.proc.errors.read().decode("utf-8", "replace").strip()
        except Exception:
            text = ""
        return (text.splitlines() or ["no message"])[-1][:300]

    def _await_hello(self):
        if self.hello is not None:
            return
        try:
            msg = self._readline(self.HELLO_TIMEOUT)
        except (OSError, ValueError) as e:
            why = self._startup_error()
            self._kill_process()
            raise engine.EngineUnavailable(f"the sandbox did not start ({type(e).__name__}): {why}") from None
        if msg.get("op") != "hello":
            raise engine.EngineUnavailable("the sandbox's zygote sent no greeting")
        self.hello = msg
        self._cleanup()  # the zygote has imported its code: an unconfined runtime folder can go

    def _kill_process(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:
            pass

    def _replace(self, why):
        self._kill_process()
        self._cleanup()
        self._ctrl.close()
        self.restarts += 1
        self._start()
        return SandboxError("died", f"the sandbox's zygote {why}; a new one was started")

    def _exchange(self, req, fds=()):
        try:
            self._await_hello()
            data = json.dumps(req).encode() + b"\n"
            self._ctrl.settimeout(self.CONTROL_TIMEOUT)
            if fds:
                socket.send_fds(self._ctrl, [data], list(fds))
            else:
                self._ctrl.sendall(data)
            return self._readline(self.CONTROL_TIMEOUT)
        except engine.EngineUnavailable:
            raise
        except (OSError, ValueError) as e:  # timeouts, a dead zygote, garbage
            raise self._replace(f"stopped answering ({type(e).__name__})") from None

    def spawn(self, submission_path, limits, threads=1, filename=None, source=None):
        """A new worker that has loaded the submission (Session.loaded says how that went)."""
        source = read_source(submission_path, source)
        filename = filename or os.path.basename(str(submission_path))
        import torch  # the grader's own import, by now done or well under way
        cuda = _cuda_devices() and torch.cuda.is_available()
        req_limits = {"memory_bytes": limits.memory_mb << 20, "file_bytes": limits.file_mb << 20,
                      "disk_bytes": max(limits.file_mb, 16) << 20, "processes": limits.processes, "cuda": cuda,
                      "cpu_seconds": limits.total_seconds * max(threads, 1) + 10}
        ours, theirs = socket.socketpair()
        capture = os.memfd_create("bn-grade-output", os.MFD_CLOEXEC)
        with self._lock:
            self._ids += 1
            wid = self._ids
            try:
                reply = self._exchange({"op": "spawn", "id": wid, "threads": threads, "limits": req_limits},
                                       fds=(theirs.fileno(), capture))
            except BaseException:
                ours.close()
                os.close(capture)
                raise
            finally:
                theirs.close()
        ours.setblocking(False)
        return Session(self, wid, ours, capture, limits, filename, source, ok=bool(reply.get("ok")))

    def kill(self, wid) -> Exit:
        with self._lock:
            try:
                r = self._exchange({"op": "kill", "id": wid})
            except SandboxError:
                return Exit(None, None)  # its zygote is gone, and every worker with it
        return Exit(r.get("code"), r.get("signal"))

    def close(self):
        try:
            self._ctrl.close()  # the zygote kills its workers and exits
            self.proc.wait(timeout=10)
        except Exception:
            self._kill_process()
        if self.launch.uid_lock is not None:
            os.close(self.launch.uid_lock)
        self._cleanup()

    def _cleanup(self):
        for path in self.launch.cleanup:
            shutil.rmtree(path, ignore_errors=True)


def read_source(submission_path, source=None) -> str:
    if source is not None:
        return source
    with open(submission_path, "rb") as f:
        raw = f.read(MAX_SOURCE + 1)
    if len(raw) > MAX_SOURCE:
        raise SandboxError("died", f"the submission is larger than {MAX_SOURCE // 1000} kB")
    return raw.decode("utf-8", "replace")


# the fields a worker's reply may carry that the grader reads everywhere, and their types
_REPLY_TYPES = {"ok": bool, "error": str, "traceback": str, "exception": str, "event": str, "memory": bool}


def _validate(msg):
    for key, kind in _REPLY_TYPES.items():
        if key in msg and not isinstance(msg[key], kind):
            raise ValueError(f"field {key} is a {type(msg[key]).__name__}")
    ops = msg.get("builtin_ops", [])
    if not isinstance(ops, list) or not all(isinstance(o, str) and len(o) < 200 for o in ops) or len(ops) > 100:
        raise ValueError("field builtin_ops is not a short list of names")
    return msg


class Session:
    """One submission's worker, seen from the grader."""

    def __init__(self, zygote, wid, sock, capture, limits, filename, source, ok=True):
        from grader.sandbox.inside import wire
        self._wire = wire
        self.zygote, self.id, self.sock, self.fd = zygote, wid, sock, self._channel(sock)
        self.capture, self.limits = capture, limits
        self.started = time.monotonic()
        self.exit: Exit | None = None
        try:
            if not ok:
                self.kill()
                raise SandboxError("died", "the sandbox could not start a worker")
            self._send({"op": "load", "filename": filename, "source": source}, limits.load_seconds,
                       "loading the submission")
            self.loaded = self._receive(limits.load_seconds, "loading the submission")
        except SandboxError as e:
            # nobody gets a Session to close: keep what it printed, then clean up
            e.output = self.output(limits.output_bytes)
            self._release()
            raise
        self.loaded.pop("sandbox", None)
        self.loaded["sandbox"] = zygote.facts()

    def _channel(self, sock):
        return sock.fileno()

    def _deadline(self, seconds):
        return min(time.monotonic() + seconds, self.started + self.limits.total_seconds)

    def _send(self, msg, seconds, what):
        wire = self._wire
        try:
            wire.send(self.fd, msg, self._deadline(seconds))
        except wire.ChannelTimeout:
            self.kill()
            raise SandboxError("timeout", f"{what} took longer than {seconds:g} s (the worker stopped reading)") \
                from None
        except OSError:
            self.kill()
            raise SandboxError("died", f"the submission's process ended before {what} ({self.exit.describe()})") \
                from None

    def _receive(self, seconds, what, limit=None):
        wire = self._wire
        try:
            return _validate(wire.recv(self.fd, self._deadline(seconds), max_bytes=MAX_REPLY))
        except wire.ChannelTimeout:
            self.kill()
            raise SandboxError("timeout", f"{what} took longer than {limit or seconds:g} s") from None
        except (wire.ChannelClosed, ConnectionError):
            self.kill()
            raise SandboxError("died", f"the submission's process ended while {what} ({self.exit.describe()})") \
                from None
        except Exception as e:  # not a plain-tensor dict, too large, or fields of the wrong type
            self.kill()
            raise SandboxError("died", f"the submission's process sent an unreadable reply while {what} "
                                       f"({type(e).__name__})") from None

    def request(self, msg, what="running a check", on_event=None):
        """The reply to msg; progress events sent before it go to on_event."""
        if self.exit is not None:
            raise SandboxError("died", "the submission's process is no longer running")
        deadline_seconds = self.limits.call_seconds
        started = time.monotonic()
        self._send(msg, deadline_seconds, what)
        while True:
            left = deadline_seconds - (time.monotonic() - started)
            reply = self._receive(max(left, 0.0), what, deadline_seconds)
            if reply.get("event") != "progress":
                return reply
            if on_event is not None:
                on_event(reply)

    def kill(self):
        if self.exit is None:
            self.exit = self.zygote.kill(self.id)

    def output(self, limit):
        """What the student's code printed, the first and last part when it is long."""
        try:
            size = os.fstat(self.capture).st_size
            if size <= limit:
                return os.pread(self.capture, size, 0).decode("utf-8", "replace")
            head = os.pread(self.capture, limit // 2, 0)
            tail = os.pread(self.capture, limit // 2, size - limit // 2)
            cut = size - len(head) - len(tail)
            return head.decode("utf-8", "replace") + f"\n[... {cut} bytes cut ...]\n" + tail.decode("utf-8", "replace")
        except OSError:
            return ""

    def _release(self):
        for close in (self.sock.close, lambda: os.close(self.capture)):
            try:
                close()
            except OSError:
                pass

    def close(self, output_limit):
        """Kill the worker (if still there) and return its output."""
        self.kill()
        text = self.output(output_limit)
        self._release()
        return text


def open_loaded(zygote, submission_path, limits, threads=1, filename=None, source=None) -> Session:
    """A worker that has loaded the submission, or LoadFailed with the status it grades with:
    the one way grading and the training stage start a worker (from a Zygote or a Spawner)."""
    try:
        session = zygote.spawn(str(submission_path), limits, threads=threads, filename=filename, source=source)
    except SandboxError as e:
        raise LoadFailed(RunStatus.TIMEOUT if e.kind == "timeout" else RunStatus.ERROR, str(e),
                         output=e.output) from None
    loaded = session.loaded
    if not loaded.get("ok"):
        raise LoadFailed(RunStatus.MEMORY if loaded.get("memory") else RunStatus.ERROR,
                         loaded.get("error", "the submission could not be loaded"),
                         loaded.get("traceback", "").strip(), session=session)
    return session


_shared = None


def start(mode: str | None = None):
    """A Zygote, or for mode 'spawned' (and for every mode but bubblewrap where no zygote can
    fork) a spawned.Spawner with the same spawn/facts/close."""
    mode = mode or _mode()
    if mode == "spawned" or (not forks() and mode in ("auto", "unconfined")):
        from grader.sandbox import spawned
        why = {"spawned": "asked for (BN_GRADE_SANDBOX=spawned)", "unconfined": "asked for (--unconfined)"}.get(
            mode, f"no sandbox engine on {sys.platform}")
        return spawned.Spawner(why)
    return Zygote(mode)


def shared(mode: str | None = None):
    """The process's zygote, started on first use: start it early, its torch import runs
    alongside the grader's."""
    global _shared
    if _shared is None:
        _shared = start(mode)
    return _shared
