"""Confinement of a sandboxed worker (worker process, before any student code runs), and the
clean-up of everything a worker started (zygote process).

What a worker gets, on a plain Linux machine:
- resource limits: CPU seconds, address space (CPU only: CUDA reserves huge virtual ranges),
  file size (which also caps its captured output), processes, no core dumps;
- no network: a new, empty network namespace (needs root, or unprivileged user namespaces);
  where neither is allowed the result says the worker had network;
- as root: its own unprivileged uid and gid (one per concurrent worker) owning only its scratch
  folder, so it cannot write the grader's files, the submissions or the output, nor signal the
  grader (uids are claimed with a lock file, so graders running side by side never share
  one). When the Python installation itself is unreadable for other users (say, under a
  0700 /root), the worker keeps one capability, CAP_DAC_READ_SEARCH, to read it: it can then
  read files it could not otherwise, but still write and signal nothing of the grader's.
What the grader cannot promise by itself is in docs/security.md.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
import stat
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
UID_BASE = 61000  # workers run as a uid from here up, claimed by lock, when the grader is root

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def become_subreaper():
    # the zygote adopts every orphan of its workers (a double fork, a setsid), so it can kill them
    return _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _unshare(flags) -> int:
    return 0 if _libc.unshare(flags) == 0 else ctypes.get_errno()


def _no_network(root: bool):
    if root:
        err = _unshare(CLONE_NEWNET)
        return ("none (own network namespace)", True) if not err else (f"available (no network namespace: "
                                                                        f"{os.strerror(err)})", False)
    uid, gid = os.getuid(), os.getgid()
    err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if err:
        return f"available (no user or network namespace: {os.strerror(err)})", False
    try:  # keep our own ids inside the new user namespace
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return "none (own user and network namespace)", True


def _world_readable(path: str) -> bool:
    # every folder on the way must let others in: o+x
    path = os.path.realpath(path)
    while True:
        try:
            st = os.stat(path)
        except OSError:
            return False
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _keep_only_read_search():
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _drop_root(uid: int, workdir: str, needs_read: list[str]):
    """Become uid/gid `uid`. Returns a description for the result."""
    os.chown(workdir, uid, uid)
    os.chmod(os.path.dirname(workdir), 0o711)  # the scratch root: traversable, not listable
    keep_read = not all(_world_readable(p) for p in needs_read)
    if keep_read:
        _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if keep_read:
        _keep_only_read_search()
        return f"uid {uid} (kept CAP_DAC_READ_SEARCH: the Python installation is not readable by other users)"
    return f"uid {uid}"


def _current_vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


UID_LOCKS = "/tmp/bn-grade-uids"


def claim_uid():
    """(uid, lock fd): a worker uid no other worker on this machine holds, whichever grader
    process started it. Several graders (shards, a self-check beside a batch) share the range,
    and kill_uid() must never reach another grader's worker."""
    import fcntl
    os.makedirs(UID_LOCKS, mode=0o700, exist_ok=True)
    for uid in range(UID_BASE, UID_BASE + 4096):
        fd = os.open(os.path.join(UID_LOCKS, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return uid, fd
    raise RuntimeError("no free worker uid")


def _user_process_count(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _limit(which, value):
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))


def confine(workdir: str, limits: dict, uid: int, needs_read: list[str]) -> dict:
    """Apply everything above to this process; returns facts for the result."""
    facts = {}
    root = os.geteuid() == 0
    facts["network"], facts["network_isolated"] = _no_network(root)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, limits["file_bytes"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG, visibly
    _limit(resource.RLIMIT_CPU, int(limits["cpu_seconds"]))
    if not limits.get("cuda"):
        _limit(resource.RLIMIT_AS, _current_vm_bytes() + limits["memory_bytes"])
    if root:
        try:
            facts["user"] = _drop_root(uid, workdir, needs_read)
        except OSError as e:
            facts["user"] = f"root (could not drop privileges: {e})"
            uid = 0
    else:
        uid = os.getuid()
        facts["user"] = f"uid {uid} (the grader's own user)"
    if uid != 0:
        # RLIMIT_NPROC counts all of the user's processes: leave room for the ones already there
        _limit(resource.RLIMIT_NPROC, _user_process_count(uid) + limits["processes"])
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return facts


def kill_strays(known: set[int]) -> int:
    """Kill and reap the zygote's children that are not live workers: orphans a worker left
    behind (double forks, setsid) that were re-parented here. Returns how many."""
    me = os.getpid()
    killed = 0
    for _ in range(20):  # each round may re-parent the next generation
        strays = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) in known:
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                strays.append(int(d))
        if not strays:
            break
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
                killed += 1
            except ChildProcessError:
                pass
    return killed


def kill_uid(uid: int):
    """As root: kill every process of a worker's uid, wherever it went (a fork that is not
    yet re-parented, a process in another session)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal: its own
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def python_paths() -> list[str]:
    """What a worker must be able to read to keep importing: the interpreter and its packages."""
    import torch
    return sorted({sys.prefix, os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(torch.__file__))})
