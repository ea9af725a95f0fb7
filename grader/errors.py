"""The errors the grader raises on purpose, as one small hierarchy (any process but the sandbox;
imports nothing).

  GraderError                 base: catch this to catch any of them
    UsageError                bad input from the person running the grader (a path, a flag, a
                              rubric, a roster, a pack, the data): one line naming the file or
                              flag and the problem, exit 2 (cli.py). Each module raises its own
                              subclass, importable where it always was: rubric.RubricError,
                              gradebook.RosterError and GradebookError, shards.ShardError,
                              gradescope_bundle.BundleError, notebook.NotebookError,
                              checks.oracle.StudentEdition, pack.PackError (packmaker.PackError),
                              training.data.DataError
    sandbox.engine.EngineUnavailable  bubblewrap cannot run here (cli.py says how to fix it)
    SandboxError              the submission's worker is gone or out of time (kind: 'timeout' or
                              'died'); one check fails with it (sandbox/zygote.py)
    LoadFailed                a fresh worker could not load the submission (status, message,
                              traceback): graded zero with the reason, never a grader traceback
                              (sandbox/zygote.py open_loaded())

Not here: the sandbox's own exceptions (sandbox/inside/: it imports nothing from the grader) and
the checks' control flow (checks/worker.py: StudentError, Failed). A grader bug is any other
exception: exit 3, or for one student of a class a zero row saying so (grading.grade_entry()).
"""
from __future__ import annotations


class GraderError(Exception):
    """Base of every error the grader raises on purpose."""


class UsageError(GraderError):
    """Bad input from the user: one line naming the file or flag and the problem (exit 2)."""


class SandboxError(GraderError):
    """The worker is gone or out of time; `kind` is 'timeout' or 'died'; `output` is what it
    printed when no session is left to read it from."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.output = ""


class LoadFailed(GraderError):
    """A fresh worker could not load the submission. status: the results.RunStatus it grades
    with; message: the one-line reason; reason: the message and the worker's traceback.
    session: the worker that loaded and failed, still open (its owner closes it: its output and
    sandbox facts belong to the result), or None when none started (then output is what it
    printed)."""

    def __init__(self, status, message, traceback="", session=None, output=""):
        self.status, self.message, self.traceback = status, message, traceback
        self.reason = message + (f"\n{traceback}" if traceback else "")
        super().__init__(self.reason)
        self.session, self.output = session, output
