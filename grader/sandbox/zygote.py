"""Parent side of the sandbox: the zygote and the sessions it hands out (parent process).

`import torch` costs seconds, so a worker must not pay it again. Forking the parent itself
would copy whatever it holds (the reference, the rubric, expected values) and, once torch has
run a parallel op, can deadlock the child's OpenMP pool. So the parent forks a zygote right
after importing torch, before it does anything else; the zygote only ever forks workers. A
worker is a grandchild: the zygote reaps it, the parent talks to it over its own socket and
kills its whole process group when time is up.
"""
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

import torch  # noqa: F401  (the point of the zygote: imported once, before the fork)

from grader.sandbox import child, confine
from grader.sandbox.inside import wire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SandboxError(Exception):
    """The worker is gone or out of time; `kind` is 'timeout' or 'died'."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.output = ""


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


def _zygote_loop(ctrl: socket.socket):
    # The zygote: no compute, no reference, no rubric; it forks workers and reaps them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    confine.become_subreaper()
    needs_read = confine.python_paths() + [REPO_ROOT]
    live = {}  # pid -> (uid, lock fd)
    reader = ctrl.makefile("r")
    for line in reader:
        req = json.loads(line)
        if req["op"] == "spawn":
            uid, lock = confine.claim_uid() if os.geteuid() == 0 else (os.getuid(), None)
            ours, theirs = socket.socketpair()
            capture_fd = os.open(req["capture"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    # the makefile reader holds the control socket open too: close both, or the
                    # student could talk to the zygote
                    reader.close()
                    ctrl.close()
                    ours.close()
                    child.serve(theirs.fileno(), req["workdir"], req["filename"], capture_fd, REPO_ROOT,
                                req["threads"], req["limits"], uid, needs_read)
                except BaseException:
                    code = 70
                finally:
                    os._exit(code)
            live[pid] = (uid, lock)
            os.close(capture_fd)
            theirs.close()
            socket.send_fds(ctrl, [json.dumps({"pid": pid}).encode() + b"\n"], [ours.fileno()])
            ours.close()
        elif req["op"] == "reap":
            pid = req["pid"]
            try:
                _, status = os.waitpid(pid, 0)
                reply = {"code": os.waitstatus_to_exitcode(status)}
            except ChildProcessError:
                reply = {"code": None}
            uid, lock = live.pop(pid, (None, None))
            if lock is not None:
                confine.kill_uid(uid)  # anything of its uid, wherever it went
                os.close(lock)  # the uid is free for any grader on this machine again
            reply["strays"] = confine.kill_strays(set(live))
            ctrl.sendall(json.dumps(reply).encode() + b"\n")
    os._exit(0)


class Zygote:
    # a zygote that does not answer within this is killed and replaced (a worker that stopped
    # or killed it, where the uid drop could not prevent that)
    CONTROL_TIMEOUT = 60.0

    def __init__(self):
        # batch grading calls spawn/reap from several threads: one exchange at a time
        self._lock = threading.Lock()
        self.restarts = 0
        self._start()

    def _start(self):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            try:
                _zygote_loop(theirs)
            finally:
                os._exit(0)
        theirs.close()
        ours.settimeout(self.CONTROL_TIMEOUT)
        self.pid = pid
        self._ctrl = ours
        self._buf = b""

    def _replace(self, why):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self._ctrl.close()
        # a zygote forked now comes from a parent that has run torch: its workers get one
        # thread each (see the module docstring), which is safe
        self.restarts += 1
        self._start()
        return SandboxError("died", f"the sandbox's zygote {why}; a new one was started")

    def _readline(self):
        while b"\n" not in self._buf:
            chunk = self._ctrl.recv(4096)
            if not chunk:
                raise ConnectionError("the sandbox zygote closed its socket")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _exchange(self, req, with_fd=False):
        try:
            self._ctrl.sendall(json.dumps(req).encode() + b"\n")
            fds = []
            if with_fd:
                msg, fds, _, _ = socket.recv_fds(self._ctrl, 4096, 1)
                if not msg:
                    raise ConnectionError("the sandbox zygote closed its socket")
                self._buf += msg
            return self._readline(), fds
        except (OSError, ValueError) as e:  # timeouts, a dead or stopped zygote, garbage
            raise self._replace(f"stopped answering ({type(e).__name__})") from None

    def spawn(self, submission_path, limits, threads=1):
        """A new worker with a scratch folder holding a copy of the submission."""
        root = tempfile.mkdtemp(prefix="bn-grade-")
        workdir = os.path.join(root, "work")
        os.mkdir(workdir)
        filename = os.path.basename(submission_path)
        shutil.copyfile(submission_path, os.path.join(workdir, filename))
        capture = os.path.join(root, "output.txt")
        cuda = os.environ.get("CUDA_VISIBLE_DEVICES", None) != "" and torch.cuda.is_available()
        if self.restarts:
            threads = 1
        req = {"op": "spawn", "workdir": workdir, "filename": filename, "capture": capture, "threads": threads,
               "limits": {"memory_bytes": limits.memory_mb << 20, "file_bytes": limits.file_mb << 20,
                          "processes": limits.processes, "cuda": cuda,
                          "cpu_seconds": limits.total_seconds * max(threads, 1) + 10}}
        with self._lock:
            try:
                info, fds = self._exchange(req, with_fd=True)
            except SandboxError:
                shutil.rmtree(root, ignore_errors=True)
                raise
        return Session(self, info["pid"], fds[0], root, capture, limits)

    def reap(self, pid):
        with self._lock:
            try:
                return self._exchange({"op": "reap", "pid": pid})[0]["code"]
            except SandboxError:
                # its zygote is gone: the worker is nobody's child now; make sure it is dead
                for kill in (os.kill, os.killpg):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                return None

    def close(self):
        try:
            self._ctrl.close()
        finally:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


class Session:
    """One submission's worker, seen from the parent."""

    def __init__(self, zygote, pid, fd, root, capture, limits):
        self.zygote, self.pid, self.fd = zygote, pid, fd
        self.root, self.capture, self.limits = root, capture, limits
        self.started = time.monotonic()
        self.exit: Exit | None = None
        try:
            self.loaded = self._receive(limits.load_seconds, "loading the submission")
        except SandboxError as e:
            # nobody gets a Session to close: keep what it printed, then clean up
            e.output = self.output(limits.output_bytes)
            shutil.rmtree(root, ignore_errors=True)
            raise

    def _deadline(self, seconds):
        return min(time.monotonic() + seconds, self.started + self.limits.total_seconds)

    def _receive(self, seconds, what, limit=None):
        try:
            return wire.recv(self.fd, self._deadline(seconds))
        except wire.ChannelTimeout:
            self.kill()
            raise SandboxError("timeout", f"{what} took longer than {limit or seconds:g} s") from None
        except (wire.ChannelClosed, ConnectionError):
            self.kill()
            raise SandboxError("died", f"the submission's process ended while {what} ({self.exit.describe()})") from None
        except Exception as e:  # a message that is not a plain-tensor dict, or too large
            self.kill()
            raise SandboxError("died", f"the submission's process sent an unreadable reply while {what} ({type(e).__name__})") from None

    def request(self, msg, what="running a check", on_event=None):
        """The reply to msg; progress events sent before it go to on_event."""
        if self.exit is not None:
            raise SandboxError("died", "the submission's process is no longer running")
        try:
            wire.send(self.fd, msg)
        except OSError:
            self.kill()
            raise SandboxError("died", f"the submission's process ended before {what} ({self.exit.describe()})") from None
        deadline_seconds = self.limits.call_seconds
        started = time.monotonic()
        while True:
            left = deadline_seconds - (time.monotonic() - started)
            reply = self._receive(max(left, 0.0), what, deadline_seconds)
            if reply.get("event") != "progress":
                return reply
            if on_event is not None:
                on_event(reply)

    def kill(self):
        if self.exit is not None:
            return
        # the worker itself first: until it has called setsid() its group does not exist yet
        for kill in (os.kill, os.killpg):
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        code = self.zygote.reap(self.pid)
        if code is None:
            self.exit = Exit(None, None)
        elif code < 0:
            self.exit = Exit(None, -code)
        else:
            self.exit = Exit(code, None)

    def output(self, limit):
        """What the student's code printed, the first and last part when it is long."""
        try:
            size = os.path.getsize(self.capture)
            with open(self.capture, "rb") as f:
                if size <= limit:
                    data = f.read()
                    return data.decode("utf-8", "replace")
                head = f.read(limit // 2)
                f.seek(size - limit // 2)
                tail = f.read()
            cut = size - len(head) - len(tail)
            return (head.decode("utf-8", "replace") + f"\n[... {cut} bytes cut ...]\n" + tail.decode("utf-8", "replace"))
        except OSError:
            return ""

    def close(self, output_limit):
        """Kill the worker (if still there), return its output, remove its scratch folder."""
        # a clean worker exits when the socket closes; SIGKILL also covers one that never reads
        try:
            os.close(self.fd)
        except OSError:
            pass
        # when exit happened before the kill (e.g. os._exit), kill() keeps the first status
        self.kill()
        text = self.output(output_limit)
        shutil.rmtree(self.root, ignore_errors=True)
        return text


_shared = None


def shared() -> Zygote:
    """The process's zygote, started on first use: call this before computing anything."""
    global _shared
    if _shared is None:
        _shared = Zygote()
    return _shared
