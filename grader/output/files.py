"""Atomic file writes and the cache lock for everything the grader writes (parent process).

A write goes to a temporary file in the same folder, then a rename, so a reader (a resumed
batch, a gradebook rebuild, Gradescope) never sees half a file. The file ends up with the
mode an ordinary open() would give it (0666 less the umask): mkstemp's private 0600 would make
a class's results unreadable to the colleagues sharing OUT, whatever their umask says.
"""
import contextlib
import os
import tempfile
import threading
import time

_umask_lock = threading.Lock()


def umask() -> int:
    # /proc tells without changing anything; the os.umask() round trip briefly sets 0, which
    # another thread of the batch pool creating a file at that moment would inherit
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


def set_mode(fd) -> None:
    # Windows has no mode bits for others to read by (and no os.fchmod before Python 3.13)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, file_mode())


def _lock(fd) -> None:
    if os.name == "nt":
        # a student's laptop: msvcrt locks a byte range, retried while another grader holds it
        import msvcrt
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                time.sleep(0.2)
    import fcntl  # POSIX only: imported where it is used
    fcntl.flock(fd, fcntl.LOCK_EX)


def write_atomic(path, data) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}-")
    try:
        set_mode(fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextlib.contextmanager
def locked(folder, name=".lock"):
    """Hold an exclusive flock on folder/name: tasks of a job array sharing one cache take turns
    to build an entry, and the ones that wait find it built. (flock works across NFSv4 clients on
    Linux.) A folder this user cannot write is only read, so it goes unlocked."""
    path = os.path.join(os.fspath(folder), name)
    fd = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)  # flock needs no write access to the lock file
        except OSError:
            fd = None
    try:
        if fd is not None:
            _lock(fd)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
