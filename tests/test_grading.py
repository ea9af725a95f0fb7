"""One submission through the pipeline (grader/grading.py) with a stand-in sandbox: what the
student sees when a worker cannot load the submission, first or after a crash, and what a grader
bug costs one entry. No student code runs here: the stand-in's workers answer as a real one does
when its process dies or its load fails."""
import time

import pytest

from conftest import CORPUS
from grader import grading
from grader.errors import GraderError, LoadFailed, SandboxError, UsageError
from grader.results import RunStatus


class _Session:
    """A worker that loaded (or not) and whose process dies at the first request."""

    def __init__(self, loaded):
        self.loaded, self.exit, self.started = loaded, None, time.monotonic()

    def request(self, msg, what="running a check", on_event=None):
        self.exit = "killed"
        raise SandboxError("died", f"the submission's process ended while {what} (killed by signal SIGKILL)")

    def close(self, limit):
        self.exit = self.exit or "killed"
        return "printed while loading\n"


class _Sandbox:
    """spawn() as Zygote and Spawner have it: the first worker loads, the later ones (re-spawned
    after each crash) fail to load as `later` says."""

    def __init__(self, later):
        self.later, self.spawned = later, 0

    def spawn(self, path, limits, threads=1, filename=None, source=None):
        self.spawned += 1
        if self.spawned == 1:
            return _Session({"ok": True, "sandbox": {"network_isolated": True}})
        if isinstance(self.later, Exception):
            raise self.later
        return _Session(self.later)


@pytest.mark.parametrize("later", [
    {"ok": False, "error": "loading the submission ran out of memory", "memory": True},
    SandboxError("timeout", "loading the submission took longer than 3 s"),
], ids=["load fails", "load times out"])
def test_a_worker_that_cannot_load_again_after_a_crash_fails_checks_not_the_grader(quick_rubric, later):
    sandbox = _Sandbox(later)
    r = grading.grade_file(CORPUS / "correct_textbook.py", quick_rubric, sandbox, cuda=False)
    assert r.status is RunStatus.GRADED  # it loaded once: graded, every check with its own verdict
    messages = [s.outcome.message for s in r.checks if not s.advisory]
    assert not any("internal grader error" in m for m in messages), messages
    assert any("could not be loaded again" in m and "loading the submission" in m for m in messages), messages
    # the three-strikes rule: after three lost workers in a row the rest are not retried
    assert any("failed in three checks in a row" in m for m in messages), messages
    assert sandbox.spawned <= 4
    assert r.score == 0 and r.sandbox == {"network_isolated": True}


def test_a_first_worker_that_cannot_load_is_a_zero_with_the_reason(quick_rubric):
    class NeverLoads(_Sandbox):
        def spawn(self, *a, **k):
            return _Session({"ok": False, "error": "importing the submission raised ValueError: no",
                             "traceback": "line 3, in <module>", "sandbox": {"network_isolated": True}})

    r = grading.grade_file(CORPUS / "correct_textbook.py", quick_rubric, NeverLoads(None), cuda=False)
    assert r.status is RunStatus.ERROR and r.score == 0
    assert r.reason == "importing the submission raised ValueError: no\nline 3, in <module>"
    assert r.student_output == "printed while loading\n" and r.sandbox == {"network_isolated": True}


def test_grade_entry_is_one_pipeline_for_one_file_and_for_a_class(quick_rubric, tmp_path, monkeypatch):
    missing = tmp_path / "erin"
    missing.mkdir()
    (missing / "readme.txt").write_text("forgot the code")
    r, source = grading.grade_entry("erin", missing, tmp_path / "staging", quick_rubric, None)
    assert (r.student, r.status, r.score, source) == ("erin", RunStatus.ERROR, 0, None)
    assert r.max_score > 0 and r.notes == [] and r.reason

    def bug(*a, **k):
        raise KeyError("oops")
    monkeypatch.setattr(grading, "grade_file", bug)
    with pytest.raises(KeyError):  # one submission: exit 3 (cli.py)
        grading.grade_entry("alice", CORPUS / "correct_textbook.py", tmp_path / "s2", quick_rubric, None)
    r, source = grading.grade_entry("alice", CORPUS / "correct_textbook.py", tmp_path / "s3", quick_rubric, None,
                                    contain=True)  # one student of a class: a zero row saying so
    assert r.status is RunStatus.ERROR and r.reason == "internal grader error: KeyError: 'oops'"
    assert source == CORPUS / "correct_textbook.py" and "KeyError" in r.notes[-1]


def test_errors_are_one_hierarchy():
    from grader import gradebook, gradescope_bundle, notebook, rubric
    from grader.shards import ShardError
    from grader.checks.oracle import StudentEdition
    from grader.cli import UsageError as CliUsageError
    assert CliUsageError is UsageError
    for e in (rubric.RubricError, gradebook.RosterError, gradebook.GradebookError, ShardError,
              gradescope_bundle.BundleError, notebook.NotebookError, StudentEdition):
        assert issubclass(e, UsageError), e
    assert issubclass(ShardError, ValueError)  # as before
    assert issubclass(SandboxError, GraderError) and issubclass(LoadFailed, GraderError)
