"""The sandboxed worker: the one place student code runs (worker process only).

A worker is forked from the zygote (see zygote.py), leaves the grader's session, drops the
grader's modules, sends its output to a capture file, imports the submission and then
answers requests: build a module, set its parameters, run a forward (and backward) on an
input the parent chose, report its state. It never sees the rubric or an expected value,
and it never compares anything: every verdict is made by the parent from what comes back.
"""
import importlib.abc
import importlib.util
import os
import sys
import traceback

import torch

from grader.sandbox import confine
from grader.sandbox.inside import wire
from grader.sandbox.inside.handlers import HANDLERS, MODULE_NAME, SubmissionError  # noqa: F401

class _BlockGraderImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("grader", "reference"):
            raise ImportError(f"No module named '{name}' (the grader is not importable from a submission)")
        return None


def _leave_grader_world(fd, workdir, capture_fd, repo_root):
    os.setsid()  # own process group: the parent can kill everything it starts at once
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(capture_fd, 1)
    os.dup2(capture_fd, 2)
    # nothing inherited from the grader stays open (its pipes, the zygote's socket): only
    # stdio and the channel to the parent
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    # sys.stdout may not write to fd 1 (a test runner's capture object): rebind both
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stdin = open(0, "r", closefd=False)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
                       "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"})
    for name in list(sys.modules):
        if name.partition(".")[0] in ("grader", "reference"):
            del sys.modules[name]
    sys.meta_path.insert(0, _BlockGraderImports())
    # a source checkout's root would make grader/ and reference/ importable by path; an
    # installed grader sits in site-packages, which must stay (the blocker above covers it)
    checkout = os.path.exists(os.path.join(repo_root, "grade.py"))
    keep = [p for p in sys.path if p and not (checkout and os.path.realpath(p) == repo_root)]
    sys.path[:] = [workdir] + keep
    sys.argv = [os.path.join(workdir, "submission.py")]


def _student_traceback(exc, filename):
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.basename(f.filename) == filename]
    lines = traceback.format_list(mine[-4:]) if mine else []
    lines += traceback.format_exception_only(type(exc), exc)
    return _local("".join(lines))[-4000:]


def _local(text):
    # the scratch folder's path means nothing to a student: show the file name alone
    return text.replace(os.getcwd() + os.sep, "")


def _load(path, filename):
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    cls = getattr(module, "BatchNorm2d", None)
    if cls is None:
        raise SubmissionError(f"{filename} defines no BatchNorm2d")
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise SubmissionError(f"BatchNorm2d in {filename} is not a subclass of torch.nn.Module")
    if cls.__module__ != MODULE_NAME:
        raise SubmissionError(f"BatchNorm2d must be defined in {filename} itself, not imported from {cls.__module__}")
    return cls


def serve(fd, workdir, filename, capture_fd, repo_root, threads, limits, uid, needs_read):
    """Never returns to the caller's code: the worker exits when the parent hangs up."""
    _leave_grader_world(fd, workdir, capture_fd, repo_root)
    facts = confine.confine(workdir, limits, uid, needs_read)
    torch.set_num_threads(threads)
    path = os.path.join(workdir, filename)
    try:
        cls = _load(path, filename)
    except SubmissionError as e:
        wire.send(fd, {"ok": False, "event": "load", "error": str(e), "traceback": "", "sandbox": facts})
        return
    except SystemExit as e:
        wire.send(fd, {"ok": False, "event": "load", "error": f"the submission called exit({e.code!r}) while being imported",
                       "traceback": _student_traceback(e, filename), "sandbox": facts})
        return
    except BaseException as e:
        wire.send(fd, {"ok": False, "event": "load", "memory": isinstance(e, MemoryError),
                       "error": _local(f"importing the submission raised {type(e).__name__}: {e}")[:2000],
                       "traceback": _student_traceback(e, filename), "sandbox": facts})
        return
    wire.send(fd, {"ok": True, "event": "load", "sandbox": facts})
    models = {}
    while True:
        try:
            req = wire.recv(fd)
        except wire.ChannelClosed:
            return
        try:
            resp = HANDLERS[req["op"]](req, cls, models, lambda event: wire.send(fd, event))
            resp["ok"] = True
        except SubmissionError as e:
            resp = {"ok": False, "error": str(e), "traceback": ""}
        except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
            resp = {"ok": False, "error": _local(f"{type(e).__name__}: {e}")[:2000],
                    "traceback": _student_traceback(e, filename),
                    "exception": type(e).__name__}
        sys.stdout.flush()
        sys.stderr.flush()
        wire.send(fd, resp)
