"""One submission's worker: isolation, then the only place student code runs (sandboxed worker).

Forked from the zygote (zygote.py). The forked process enters new user, mount, PID, network,
IPC and UTS namespaces and forks the worker proper, which is PID 1 of its own PID namespace:
it cannot see or signal the zygote or another worker, and when it dies everything it started
dies with it. The worker then mounts private, size-capped tmpfs on its working folder
/tmp/work and on /dev/shm, hides /proc, sets its resource limits, drops every capability,
and only then receives the submission's source from the grader, imports it and answers
requests (handlers.py). It never sees the rubric or an expected value, and it compares nothing.
"""
import ctypes
import importlib.util
import os
import signal

try:
    # imported here, while the zygote's filesystem is whole (a worker imports nothing new once
    # it has confined itself); a spawned worker on Windows has no resource module and never sets rlimits
    import resource
except ImportError:
    resource = None
import sys
import traceback

import torch

from . import handlers, placeholders, wire

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_DUMPABLE = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
WORKDIR = "/tmp/work"
PROC_KEPT = ("cpuinfo", "meminfo", "stat")



class _Libc:
    # loaded on first use: only the namespace code calls the C library, and a spawned worker on
    # Windows (inside/spawned.py) imports this module for serve() without having one by that name
    _lib = None

    def __getattr__(self, name):
        if _Libc._lib is None:
            _Libc._lib = ctypes.CDLL(None, use_errno=True)
        return getattr(_Libc._lib, name)


_libc = _Libc()


def _err(what) -> str:
    e = ctypes.get_errno()
    return f"{what}: {os.strerror(e)}"


def unshare_all(uid: int, gid: int) -> str:
    """New namespaces for this process ('' on success, else why not). Its children are in
    the new PID namespace; it keeps its uid and gid inside the new user namespace."""
    # its own /proc/self files belong to it only while it is dumpable (a uid change, as the
    # zygote's from root, clears that): dumpable just long enough to write its maps
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        return _unshare_all(uid, gid)
    finally:
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _unshare_all(uid: int, gid: int) -> str:
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS):
        return _err("unshare")
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError as e:
        return f"writing the user namespace's maps: {e.strerror}"
    return ""


def _mount_tmpfs(where: str, size: int, mode: str = "1777") -> None:
    if _libc.mount(b"tmpfs", where.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={size},mode={mode}".encode()):
        raise OSError(ctypes.get_errno(), f"mounting a tmpfs on {where}")


def _private_filesystem(limits: dict) -> None:
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None):
        raise OSError(ctypes.get_errno(), "making mounts private")
    _mount_tmpfs(WORKDIR, limits["disk_bytes"], "700")  # the sandbox's /tmp itself is read-only
    if os.path.isdir("/dev/shm"):
        _mount_tmpfs("/dev/shm", limits["disk_bytes"])
    if not limits.get("cuda"):
        # /proc still shows the zygote and the other workers (a PID namespace needs a /proc of
        # its own, which a nested sandbox may not mount): an empty read-only tmpfs hides it.
        # CUDA's driver reads /proc, so a GPU run keeps it; every process is non-dumpable, so
        # no other worker's memory, files or environment can be opened through it anyway.
        # torch's CPU detection reads a few static files: those stay, as copies
        kept = {}
        for name in PROC_KEPT:
            try:
                with open(f"/proc/{name}", "rb") as f:
                    kept[name] = f.read()
            except OSError:
                pass
        _mount_tmpfs("/proc", 1 << 20, "555")
        for name, data in kept.items():
            with open(f"/proc/{name}", "wb") as f:
                f.write(data)
        if _libc.mount(None, b"/proc", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None):
            raise OSError(ctypes.get_errno(), "hiding /proc")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    # a new user namespace hands its first process every capability inside it (enough to
    # unmount the tmpfs over /proc, say): keep none
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    if _libc.capset(ctypes.byref(header), (_CapData * 2)()):
        raise OSError(ctypes.get_errno(), "dropping capabilities")


def _limit(which, value) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _user_processes(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                n += os.stat(f"/proc/{d}").st_uid == uid
            except OSError:
                pass
    return n


def _limits(limits: dict, isolated: bool, vm: int) -> None:
    # isolated, RLIMIT_NPROC counts this worker's user namespace alone; unconfined it counts
    # every process of the user, so leave room for those already running
    base = 0 if isolated else _user_processes(os.getuid())
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, limits["file_bytes"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG, visibly
    _limit(resource.RLIMIT_CPU, int(limits["cpu_seconds"]))
    if not limits.get("cuda"):  # CUDA reserves huge virtual ranges
        _limit(resource.RLIMIT_AS, vm + limits["memory_bytes"])
    _limit(resource.RLIMIT_NPROC, base + limits["processes"])


def _stdio(chan: int, capture: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(capture, 1)
    os.dup2(capture, 2)
    # nothing inherited stays open but stdio and the channel to the grader
    os.closerange(3, chan)
    os.closerange(chan + 1, 1 << 16)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stdin = open(0, "r", closefd=False)


def start(chan: int, capture: int, report_fd: int, req: dict, isolate: bool):
    """In the zygote's fresh child: never returns."""
    code = 70
    try:
        if isolate:
            why = unshare_all(os.getuid(), os.getgid())
            if why:
                os._exit(71)
        pid = os.fork()
        if pid == 0:
            os.close(report_fd)
            _run(chan, capture, req, isolate)
            os._exit(0)
        os.write(report_fd, str(pid).encode())
        os.close(report_fd)
        os.close(chan)
        os.close(capture)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    finally:
        os._exit(code % 256)


def _run(chan: int, capture: int, req: dict, isolated: bool):
    workdir = WORKDIR
    try:
        # its own session and process group: kill(0, ...) from student code would otherwise
        # reach the zygote, whose process group it was born in
        os.setsid()
        vm = _vm_bytes()  # before /proc is hidden
        if isolated:
            _private_filesystem(req["limits"])
        else:
            workdir = req["workdir"]  # made (and removed) by the zygote
        _stdio(chan, capture)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
                           "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(req["threads"])})
        _limits(req["limits"], isolated, vm)
        if isolated:
            _drop_capabilities()
        torch.set_num_threads(max(1, int(req["threads"])))
    except BaseException as e:  # the grader sees a worker that could not confine itself
        try:
            wire.send(chan, {"ok": False, "event": "load", "error": f"the sandbox could not be set up: {e}",
                             "traceback": "", "sandbox_failed": True})
        finally:
            os._exit(72)
    serve(chan, workdir)


def _student_traceback(exc, filename):
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.basename(f.filename) == filename]
    lines = traceback.format_list(mine[-4:]) if mine else []
    lines += traceback.format_exception_only(type(exc), exc)
    return _local("".join(lines))[-4000:]


def _local(text):
    # the working folder's path means nothing to a student: show the file name alone
    return text.replace(os.getcwd() + os.sep, "")


def _load(path, filename):
    placeholders.install(path)  # packages the layer does not use may be missing here
    spec = importlib.util.spec_from_file_location(handlers.MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[handlers.MODULE_NAME] = module
    spec.loader.exec_module(module)
    cls = getattr(module, "BatchNorm2d", None)
    if cls is None:
        raise handlers.SubmissionError(f"{filename} defines no BatchNorm2d")
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise handlers.SubmissionError(f"BatchNorm2d in {filename} is not a subclass of torch.nn.Module")
    if cls.__module__ != handlers.MODULE_NAME:
        raise handlers.SubmissionError(f"BatchNorm2d must be defined in {filename} itself, not imported from "
                                       f"{cls.__module__}")
    return cls


def _import(fd, workdir):
    req = wire.recv(fd)
    filename = os.path.basename(str(req.get("filename") or "submission.py")) or "submission.py"
    path = os.path.join(workdir, filename)
    with open(path, "w", encoding="utf-8") as f:
        f.write(req["source"])
    sys.path[:0] = [workdir]
    sys.argv = [path]
    try:
        return _load(path, filename), filename, None
    except handlers.SubmissionError as e:
        reply = {"error": str(e), "traceback": ""}
    except SystemExit as e:
        reply = {"error": f"the submission called exit({e.code!r}) while being imported",
                 "traceback": _student_traceback(e, filename)}
    except BaseException as e:
        reply = {"memory": isinstance(e, MemoryError),
                 "error": _local(f"importing the submission raised {type(e).__name__}: {e}")[:2000],
                 "traceback": _student_traceback(e, filename)}
    return None, filename, reply


def serve(fd: int, workdir: str):
    """Load the submission the grader sends, then answer until it hangs up."""
    cls, filename, failed = _import(fd, workdir)
    sys.stdout.flush()
    sys.stderr.flush()
    if failed is not None:
        wire.send(fd, {"ok": False, "event": "load", **failed})
        return
    wire.send(fd, {"ok": True, "event": "load"})
    models = {}
    while True:
        try:
            req = wire.recv(fd)
        except wire.ChannelClosed:
            return
        try:
            resp = handlers.HANDLERS[req["op"]](req, cls, models, lambda event: wire.send(fd, event))
            resp["ok"] = True
        except handlers.SubmissionError as e:
            resp = {"ok": False, "error": str(e), "traceback": ""}
        except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
            resp = {"ok": False, "error": _local(f"{type(e).__name__}: {e}")[:2000],
                    "traceback": _student_traceback(e, filename), "exception": type(e).__name__}
        sys.stdout.flush()
        sys.stderr.flush()
        wire.send(fd, resp)
