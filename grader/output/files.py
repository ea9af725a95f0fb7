"""Atomic file writes for everything the grader writes (parent process): a temporary file in
the same folder, then a rename, so a reader (a resumed batch, a gradebook rebuild, Gradescope)
never sees half a file."""
import os
import tempfile


def write_atomic(path, data) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
