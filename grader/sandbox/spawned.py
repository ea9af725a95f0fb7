"""Spawned workers: a fresh interpreter per submission, no sandbox (grader process).

For a student checking their own file where the bubblewrap sandbox cannot run: Windows and
macOS always, Linux when asked (BN_GRADE_SANDBOX=spawned; the tests force it there so that
the path students' laptops take is the one tested). Nothing here needs fork, namespaces, fd
passing or memfd. Each worker is `python -I -B -X utf8` running grader/sandbox/inside/ loaded
by path (inside/spawned.py), talking the zygote's wire protocol over a loopback socket (select()
waits on sockets on every platform, so the deadlines are the same as the sandbox's). The
student's prints go to a temporary file that is removed with the worker.

The grader enforces what it can: time by killing the worker's whole process tree (POSIX: its
own session and killpg; Windows: a job object, which also bounds memory, CPU time and the
number of processes); the worker sets rlimits on Linux and macOS. The results say plainly that
the run was unconfined and what bounded it, from here (what the grader set up), not from the
worker.

Importing torch costs a fresh interpreter seconds, so one worker is started ahead (at
construction, alongside the grader's own import, and after a second spawn, when more are
likely to follow).
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from grader import cpus
from grader.sandbox import engine
from grader.sandbox.zygote import Exit, SandboxError, Session, read_source

ENGINE = "none (spawned, unconfined)"
# the environment a worker keeps: enough for Python, torch and a GPU driver to start; the rest
# of the user's environment (tokens, credentials) stays with the grader
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "USER", "LOGNAME", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
            "CUDA_HOME", "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "PATHEXT", "COMSPEC", "USERPROFILE",
            "LOCALAPPDATA", "APPDATA", "PROGRAMDATA", "NUMBER_OF_PROCESSORS", "PROCESSOR_ARCHITECTURE",
            "PROCESSOR_IDENTIFIER", "OS")
BOOT = ("import importlib.util as u, os, sys\n"
        "def load(name, path, search=None):\n"
        "    spec = u.spec_from_file_location(name, path, submodule_search_locations=search)\n"
        "    m = u.module_from_spec(spec)\n"
        "    sys.modules[name] = m\n"
        "    spec.loader.exec_module(m)\n"
        "    return m\n"
        "inside, lenet, port = sys.argv[1:4]\n"
        "load('bn_lenet', lenet)\n"
        "load('bn_inside', os.path.join(inside, '__init__.py'), [inside])\n"
        "from bn_inside import spawned\n"
        "spawned.main(int(port))\n")


def limits_text(platform: str = sys.platform, job: str = "") -> str:
    """What bounds a spawned worker here, in the results' words."""
    if platform.startswith("win"):
        if job:
            return f"none: a Windows job object could not be set up ({job}); the grader kills the worker at the time limit"
        return ("a Windows job object: memory, CPU time and number of processes; the grader kills the worker's "
                "whole process tree at the time limit")
    if platform == "darwin":
        return ("rlimits (CPU time, file size); memory and processes not bounded (macOS enforces no address-space "
                "limit); the grader kills the worker's process group at the time limit")
    return ("rlimits (address space, CPU time, file size, processes); the grader kills the worker's process "
            "group at the time limit")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", **cpus.openmp_wait_env(exclusive=False)})
    return env


class _Job:
    """A Windows job object holding one worker's process tree (ctypes; Windows only)."""
    CREATE_SUSPENDED = 0x4
    LIMIT_JOB_TIME = 0x4
    LIMIT_ACTIVE_PROCESS = 0x8
    LIMIT_JOB_MEMORY = 0x200
    LIMIT_KILL_ON_JOB_CLOSE = 0x2000
    EXTENDED_LIMIT_INFORMATION = 9

    def __init__(self):
        import ctypes
        self.ctypes = ctypes
        self.k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        for name in ("CreateJobObjectW", "OpenProcess"):
            getattr(self.k32, name).restype = ctypes.c_void_p
        self.k32.CreateJobObjectW.argtypes = (ctypes.c_void_p, ctypes.c_wchar_p)
        for name in ("SetInformationJobObject", "QueryInformationJobObject"):
            getattr(self.k32, name).argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32) + (
                (ctypes.c_void_p,) if name.startswith("Query") else ())
        self.k32.AssignProcessToJobObject.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
        self.k32.TerminateJobObject.argtypes = (ctypes.c_void_p, ctypes.c_uint)
        self.k32.CloseHandle.argtypes = (ctypes.c_void_p,)
        self.handle = self.k32.CreateJobObjectW(None, None)
        if not self.handle:
            raise OSError(ctypes.get_last_error(), "CreateJobObjectW failed")
        self.info = extended_limit_information()()
        self.info.basic.LimitFlags = self.LIMIT_KILL_ON_JOB_CLOSE  # the grader's death ends the tree
        self._set()

    def _set(self):
        c = self.ctypes
        if not self.k32.SetInformationJobObject(self.handle, self.EXTENDED_LIMIT_INFORMATION, c.byref(self.info),
                                                c.sizeof(self.info)):
            raise OSError(c.get_last_error(), "SetInformationJobObject failed")

    def assign_and_resume(self, proc):
        # started suspended, so that nothing it starts escapes the job before it is in it (a
        # venv's python.exe is a launcher that starts the real interpreter at once)
        c = self.ctypes
        if not self.k32.AssignProcessToJobObject(self.handle, c.c_void_p(int(proc._handle))):
            raise OSError(c.get_last_error(), "AssignProcessToJobObject failed")
        ntdll = c.WinDLL("ntdll")
        ntdll.NtResumeProcess.argtypes = (c.c_void_p,)
        if ntdll.NtResumeProcess(c.c_void_p(int(proc._handle))) != 0:
            raise OSError("NtResumeProcess failed")

    def bound(self, limits, threads):
        # memory counted from what the warm interpreter already holds (torch), as RLIMIT_AS is
        c = self.ctypes
        used = extended_limit_information()()
        self.k32.QueryInformationJobObject(self.handle, self.EXTENDED_LIMIT_INFORMATION, c.byref(used),
                                           c.sizeof(used), None)
        self.info.JobMemoryLimit = used.PeakJobMemoryUsed + (limits.memory_mb << 20)
        self.info.basic.PerJobUserTimeLimit = int((limits.total_seconds * max(threads, 1) + 10) * 10_000_000)
        self.info.basic.ActiveProcessLimit = max(limits.processes, 4)
        self.info.basic.LimitFlags |= self.LIMIT_JOB_MEMORY | self.LIMIT_JOB_TIME | self.LIMIT_ACTIVE_PROCESS
        self._set()

    def kill(self):
        self.k32.TerminateJobObject(self.handle, 137)

    def close(self):
        self.k32.CloseHandle(self.handle)


def extended_limit_information():
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION as ctypes lays it out (defined on every platform so
    that its layout is tested on Linux too: 144 bytes on 64-bit Windows)."""
    import ctypes

    class Basic(ctypes.Structure):
        _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", ctypes.c_uint32), ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", ctypes.c_uint32),
                    ("Affinity", ctypes.c_size_t), ("PriorityClass", ctypes.c_uint32),
                    ("SchedulingClass", ctypes.c_uint32)]

    class Extended(ctypes.Structure):
        _fields_ = [("basic", Basic), ("IoInfo", ctypes.c_uint64 * 6), ("ProcessMemoryLimit", ctypes.c_size_t),
                    ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t),
                    ("PeakJobMemoryUsed", ctypes.c_size_t)]
    return Extended


class _Worker:
    """One started interpreter, before and after it is handed a submission."""

    def __init__(self, spawner):
        self.capture = tempfile.NamedTemporaryFile(prefix="bn-grade-output-", suffix=".txt", delete=False)
        self.workdir = tempfile.mkdtemp(prefix="bn-grade-work-")
        self.token = secrets.token_hex(16).encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.job, self.job_error = None, ""
        windows = os.name == "nt"
        argv = [sys.executable, "-I", "-B", "-X", "utf8", "-c", BOOT, engine.INSIDE, engine.LENET,
                str(self.listener.getsockname()[1])]
        kw = {"start_new_session": True} if not windows else {
            # its own process group: the console's Ctrl-C is the grader's to handle
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | _Job.CREATE_SUSPENDED}
        if windows:
            try:
                self.job = _Job()
            except OSError as e:
                self.job_error = str(e)
                kw["creationflags"] &= ~_Job.CREATE_SUSPENDED
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self.capture, stderr=subprocess.STDOUT,
                                     env=_env(), cwd=self.workdir, **kw)
        self.capture.close()  # the worker holds its own copy
        if self.job is not None:
            try:
                self.job.assign_and_resume(self.proc)
            except OSError as e:
                self.proc.kill()
                raise SandboxError("died", f"could not start a worker in a Windows job object: {e}") from None
        try:
            self.proc.stdin.write(self.token + b"\n")
            self.proc.stdin.close()
        except OSError:
            pass  # it is gone already: connect() says so
        self.sock = None
        self.hello = None

    def connect(self, timeout: float):
        """Wait for the worker to import torch and call back; SandboxError if it does not."""
        if self.sock is not None:
            return
        deadline = time.monotonic() + timeout
        self.listener.settimeout(0.2)
        while True:
            if self.proc.poll() is not None:
                raise SandboxError("died", f"the worker ended while starting ({self.exit().describe()}): "
                                           f"{self.tail()}")
            if time.monotonic() > deadline:
                raise SandboxError("timeout", f"the worker did not start within {timeout:g} s")
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, BlockingIOError):
                continue
            # only the process the grader started knows the token; anything else that found
            # the port is turned away
            conn.settimeout(10)
            try:
                line = b""
                while not line.endswith(b"\n") and len(line) < 100:
                    chunk = conn.recv(1)
                    if not chunk:
                        break
                    line += chunk
            except OSError:
                line = b""
            if secrets.compare_digest(line.strip(), self.token):
                break
            conn.close()
        self.listener.close()
        from grader.sandbox.inside import wire
        conn.setblocking(False)
        try:
            self.hello = wire.recv(conn, deadline, max_bytes=1 << 16)
        except (wire.ChannelTimeout, wire.ChannelClosed, ValueError, OSError):
            conn.close()
            raise SandboxError("died", "the worker sent no greeting") from None
        self.sock = conn

    def exit(self) -> Exit:
        code = self.proc.returncode
        if code is None:
            return Exit(None, None)
        return Exit(None, -code) if code < 0 else Exit(code, None)

    def tail(self) -> str:
        try:
            with open(self.capture.name, "rb") as f:
                text = f.read()[-4000:].decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return (text.splitlines() or ["no message"])[-1][:300]

    def kill(self) -> Exit:
        if self.proc.returncode is None:
            try:
                if self.job is not None:
                    self.job.kill()
                elif os.name == "nt":
                    self.proc.kill()
                else:
                    # its session's process group: whatever it started goes with it
                    os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.job is not None:
            self.job.close()
            self.job = None
        for close in (self.listener.close, *( (self.sock.close,) if self.sock else ())):
            try:
                close()
            except OSError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.exit()

    def remove_capture(self):
        try:
            os.unlink(self.capture.name)
        except OSError:
            pass


class Spawner:
    """The zygote's counterpart without a zygote: zygote.shared() returns one for mode 'spawned'."""
    mode = "spawned"
    confined = False
    START_TIMEOUT = 180.0  # importing torch from a cold disk

    def __init__(self, why: str = "asked for (BN_GRADE_SANDBOX=spawned)"):
        self.why_unconfined = why
        self._lock = threading.Lock()  # batch grading spawns from several threads
        self._ids = 0
        self._spawned = 0
        self._live = {}
        self._spare = _Worker(self)
        self.restarts = 0
        # the CLI never closes its shared zygote (a forked one dies with its socket); a spare
        # worker and its files must not outlive the grader
        atexit.register(self.close)

    def facts(self) -> dict:
        job = ""
        if os.name == "nt":
            job = next((w.job_error for w in self._live.values() if w.job_error), "")
        return {"engine": ENGINE, "confined": False,
                "isolation": "none: a fresh Python per submission, as your own user; for checking your own code only",
                "user": "your own user (unconfined: for checking your own code only)",
                "network": "available (unconfined)", "network_isolated": False, "filesystem": "the user's own",
                "limits": limits_text(job=job), "why_unconfined": self.why_unconfined}

    def _take(self) -> _Worker:
        with self._lock:
            w, self._spare = self._spare, None
            self._spawned += 1
            if w is None or w.proc.poll() is not None:
                if w is not None:
                    w.kill()
                    w.remove_capture()
                w = _Worker(self)
            if self._spawned >= 2:
                # a second submission or a training run: more will likely follow
                self._spare = _Worker(self)
            return w

    def spawn(self, submission_path, limits, threads=1, filename=None, source=None):
        """A new worker that has loaded the submission (Session.loaded says how that went)."""
        source = read_source(submission_path, source)
        filename = filename or os.path.basename(str(submission_path))
        import torch  # the grader's own import, by now done or well under way
        from grader.sandbox.inside import wire
        cuda = bool(os.environ.get("CUDA_VISIBLE_DEVICES", None) != "" and torch.cuda.is_available())
        req_limits = {"memory_bytes": limits.memory_mb << 20, "file_bytes": limits.file_mb << 20,
                      "processes": limits.processes, "cuda": cuda,
                      "cpu_seconds": limits.total_seconds * max(threads, 1) + 10}
        w = self._take()
        with self._lock:
            self._ids += 1
            wid = self._ids
            self._live[wid] = w
        try:
            w.connect(self.START_TIMEOUT)
            if w.job is not None:
                w.job.bound(limits, threads)
            deadline = time.monotonic() + limits.load_seconds + 30
            wire.send(w.sock, {"op": "setup", "workdir": w.workdir, "threads": threads, "limits": req_limits},
                      deadline)
            reply = wire.recv(w.sock, deadline, max_bytes=1 << 16)
            if not reply.get("ok"):
                raise SandboxError("died", str(reply.get("error", "the worker could not be set up"))[:500])
        except SandboxError as e:
            self.kill(wid)
            e.output = _read_output(w.capture.name, limits.output_bytes)
            w.remove_capture()
            raise
        except (wire.ChannelTimeout, wire.ChannelClosed, ValueError, OSError) as e:
            self.kill(wid)
            err = SandboxError("died", f"the worker stopped while being set up ({type(e).__name__})")
            err.output = _read_output(w.capture.name, limits.output_bytes)
            w.remove_capture()
            raise err from None
        return SpawnedSession(self, wid, w, limits, filename, source)

    def kill(self, wid) -> Exit:
        with self._lock:
            w = self._live.pop(wid, None)
        return w.kill() if w is not None else Exit(None, None)

    def close(self):
        with self._lock:
            workers = list(self._live.values()) + ([self._spare] if self._spare else [])
            self._live, self._spare = {}, None
        for w in workers:
            w.kill()
            w.remove_capture()


def _read_output(path, limit) -> str:
    """What the student's code printed, the first and last part when it is long."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(0)
            if size <= limit:
                return f.read().decode("utf-8", "replace")
            head = f.read(limit // 2)
            f.seek(size - limit // 2)
            tail = f.read()
    except OSError:
        return ""
    cut = size - len(head) - len(tail)
    return head.decode("utf-8", "replace") + f"\n[... {cut} bytes cut ...]\n" + tail.decode("utf-8", "replace")


class SpawnedSession(Session):
    """zygote.Session over a spawned worker's socket; its output is a file, not a memfd."""

    def __init__(self, spawner, wid, worker, limits, filename, source):
        self.worker = worker
        super().__init__(spawner, wid, worker.sock, None, limits, filename, source)

    def _channel(self, sock):
        return sock  # a socket object: on Windows it is no file descriptor

    def output(self, limit):
        return _read_output(self.worker.capture.name, limit)

    def _release(self):
        self.worker.kill()  # already dead by now; closes its socket and removes its folder
        self.worker.remove_capture()

