"""The sandbox engine: bubblewrap, and how the zygote is started inside it (grader process).

What exists inside the sandbox: read-only /usr, the Python installation and its packages (the
grader's own distribution hidden), the worker's code (grader/sandbox/inside/ and the LeNet-5
harness, nothing else of the grader), a read-only /tmp with an empty /tmp/work (each worker
mounts its own tmpfs there), /dev, and /proc of the sandbox's own PID namespace. Not there: the grader's checkout, reference/, rubrics, caches, the class folder, OUT,
the home directory, the grader's environment. No network, its own PID, IPC and UTS
namespaces, no new privileges; the grader's death kills it (--die-with-parent).

As an ordinary user bubblewrap runs unprivileged through a user namespace, keeping the user's
uid. As root it needs no user namespace: it keeps only CAP_SETUID/CAP_SETGID, which the zygote
spends at once to become an unprivileged uid claimed for this grader (so RLIMIT_NPROC applies,
and nothing in the sandbox runs as root); the claim is a lock file, so graders side by side
never share a uid.

Where bubblewrap cannot run, `unconfined()` starts the same zygote as a plain process: only for
a student checking their own file, or when the instructor says --unconfined (cli.py decides).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field

from grader import cpus
from grader.errors import GraderError

INSIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inside")
LENET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training", "lenet.py")
RUNTIME = "/opt/bn-grader"  # inside the sandbox: bn_inside/ (the worker's package) and bn_lenet.py
UID_BASE = 61000  # as root, the sandbox runs as a uid from here up, claimed by lock
UID_LOCKS = "/tmp/bn-grade-uids"
OWN_TOP_LEVEL = ("grader", "reference", "rubrics")  # what our distribution installs
FIX = ("install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap), enable unprivileged user "
       "namespaces (sysctl kernel.unprivileged_userns_clone=1), or run as root or in a container")


class EngineUnavailable(GraderError):
    """bubblewrap cannot run here (not installed, no user namespaces, no free uid)."""


@dataclass
class Launch:
    argv: list
    pass_fds: tuple
    engine: str  # what the results record, e.g. "bubblewrap 0.8.0"
    user: str
    uid_lock: int | None = None
    cleanup: list = field(default_factory=list)


def _bwrap():
    # BN_GRADE_BWRAP: a bwrap installed elsewhere (or, in the tests, one that is not there)
    chosen = os.environ.get("BN_GRADE_BWRAP")
    if chosen is not None:
        return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None
    return shutil.which("bwrap")


def version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return out or "bubblewrap (unknown version)"


def probe() -> str:
    """'' when bubblewrap can make a sandbox here, else why not (one line)."""
    path = _bwrap()
    if path is None:
        return "bubblewrap (bwrap) is not installed"
    argv = [path, "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--", "/bin/true"]
    if os.geteuid() != 0:
        argv.insert(1, "--unshare-user")
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not start: {e}"
    if r.returncode:
        return f"bubblewrap cannot create a sandbox here: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    return ""


def _python_dirs() -> list[str]:
    # the interpreter, its standard library and every folder of installed packages; torch is
    # found without importing it (the grader imports torch while the sandbox starts)
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        dirs.add(sysconfig.get_paths()[key])
    dirs.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site and os.path.isdir(user_site):
        dirs.add(user_site)
    spec = importlib.util.find_spec("torch")
    if spec and spec.origin:
        dirs.add(os.path.dirname(os.path.dirname(spec.origin)))
    dirs = sorted(os.path.realpath(d) for d in dirs if d and os.path.isdir(d))
    # a folder inside another one is mounted with it
    return [d for d in dirs if not any(d != o and d.startswith(o + os.sep) for o in dirs)]


def _hidden(site_roots: list[str]) -> tuple[list[str], list[str]]:
    """(folders, files) of our own distribution inside the mounted package folders: an
    installed grader carries reference/ and the rubrics, an editable install names the checkout."""
    folders, files = [], []
    for root in site_roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            full = os.path.join(root, name)
            if name in OWN_TOP_LEVEL or name.startswith(("bn_grader", "bn-grader")):
                (folders if os.path.isdir(full) else files).append(full)
            elif name.startswith("__editable__") and "bn_grader" in name:
                files.append(full)
    return folders, files


def _site_roots(dirs):
    roots = set()
    for d in dirs:
        for dirpath, dirnames, _ in os.walk(d):
            if os.path.basename(dirpath) in ("site-packages", "dist-packages"):
                roots.add(dirpath)
                dirnames[:] = []
            elif dirpath.count(os.sep) - d.count(os.sep) >= 3:
                dirnames[:] = []
    return sorted(roots)


def claim_uid():
    """(uid, lock fd): a uid no other grader on this machine holds."""
    import fcntl  # POSIX only, and only bubblewrap as root needs it: never imported on Windows
    os.makedirs(UID_LOCKS, mode=0o700, exist_ok=True)
    for uid in range(UID_BASE, UID_BASE + 4096):
        fd = os.open(os.path.join(UID_LOCKS, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return uid, fd
    raise EngineUnavailable("no free sandbox uid")


def _zygote_cmd(ctrl_fd: int, isolate: bool, uid: int | None, runtime: str) -> list[str]:
    code = (f"import sys; sys.path[:0] = [{runtime!r}]; from bn_inside import zygote; "
            f"zygote.main({ctrl_fd}, {isolate!r}, {uid!r})")
    # not the resolved path: a venv is recognised by the folder its python is started from
    return [sys.executable, "-I", "-B", "-c", code]


def _env() -> dict:
    # how idle OpenMP threads wait: as the grader decided for itself (cli.py), else they sleep
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1", **cpus.openmp_wait_env(exclusive=False)}


def _parents(dest: str, made: set) -> list:
    # bubblewrap run as root makes the missing parents of a mount point mode 0700, which the
    # sandbox's unprivileged uid cannot pass through (a module not yet imported would then be
    # "not found"): make them 0755 first
    out, path = [], ""
    for part in dest.strip("/").split("/")[:-1]:
        path += "/" + part
        if path not in made:
            made.add(path)
            out += ["--perms", "0755", "--dir", path]
    return out


def bubblewrap(ctrl_fd: int, cuda: bool) -> Launch:
    path = _bwrap()
    if path is None:
        raise EngineUnavailable("bubblewrap (bwrap) is not installed")
    root = os.geteuid() == 0
    uid, lock = claim_uid() if root else (None, None)
    dirs = _python_dirs()
    argv = [path, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv"]
    if root:
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user"]
    for k, v in _env().items():
        argv += ["--setenv", k, v]
    # /tmp first, so that a Python installed under /tmp (a CI runner's venv) is mounted on top;
    # it is read-only in the end: each worker mounts its own tmpfs on /tmp/work
    argv += ["--perms", "1777", "--size", str(1 << 20), "--tmpfs", "/tmp", "--dir", "/tmp/work"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = "/" + name
        if os.path.islink(p):
            argv += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            argv += ["--ro-bind", p, p]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf"):
        argv += ["--ro-bind-try", f, f]
    argv += ["--ro-bind-try", "/etc/ld.so.conf.d", "/etc/ld.so.conf.d"]
    made = {"/", "/tmp", "/usr"}
    for d in dirs:
        if d == "/usr" or d.startswith("/usr/"):
            continue
        argv += _parents(d, made) + ["--ro-bind", d, d]
    folders, files = _hidden(_site_roots(dirs))
    for d in folders:
        argv += ["--tmpfs", d, "--remount-ro", d]
    for f in files:
        argv += ["--ro-bind", "/dev/null", f]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if cuda:
        for name in sorted(os.listdir("/dev")):
            if name.startswith("nvidia"):
                argv += ["--dev-bind", "/dev/" + name, "/dev/" + name]
        argv += ["--ro-bind-try", "/sys", "/sys"]
    argv += _parents(f"{RUNTIME}/bn_inside", made)
    argv += ["--ro-bind", INSIDE, f"{RUNTIME}/bn_inside", "--ro-bind", LENET, f"{RUNTIME}/bn_lenet.py",
             "--remount-ro", "/tmp", "--remount-ro", "/", "--chdir", "/tmp", "--"]
    argv += _zygote_cmd(ctrl_fd, True, uid, RUNTIME)
    user = f"uid {uid} (claimed for this grader; root is left at the sandbox's door)" if root else \
        f"uid {os.getuid()} (the grader's own user, in a user namespace)"
    return Launch(argv, (ctrl_fd,), version(path), user, lock)


def unconfined(ctrl_fd: int) -> Launch:
    # the same zygote and worker code, as a plain process: a runtime folder holds links to it
    runtime = tempfile.mkdtemp(prefix="bn-grade-runtime-")
    os.symlink(INSIDE, os.path.join(runtime, "bn_inside"))
    os.symlink(LENET, os.path.join(runtime, "bn_lenet.py"))
    return Launch(_zygote_cmd(ctrl_fd, False, None, runtime), (ctrl_fd,), "none (unconfined)",
                  f"uid {os.getuid()} (the grader's own user, unconfined)", None, [runtime])


def start(launch: Launch, env_extra: dict | None = None) -> subprocess.Popen:
    env = _env() if launch.engine.startswith("bubblewrap") else {**_env(), **(env_extra or {})}
    # what the zygote or bubblewrap says on failing to start; an anonymous file leaves nothing behind
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(launch.argv, pass_fds=launch.pass_fds, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    proc.errors = errors
    return proc
