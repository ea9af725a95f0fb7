"""Hostile submissions, one per attack. Each test asserts the graded outcome, that nothing
outside the worker's scratch folder changed, and that no process of it is left behind.
Scores cannot be tampered with because every comparison and all scoring run in the parent:
these tests show it."""
import os
import socket

import pytest

from conftest import ROOT, TEMPLATE_OK, write
from grader.sandbox.confine import UID_BASE

ROOT_USER = os.geteuid() == 0


def _template(extra):
    return TEMPLATE_OK.replace("{extra}", extra)


def _worker_processes():
    # processes of the workers' uids (root) — any survivor is a leak
    left = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                uid = os.stat(f"/proc/{d}").st_uid
            except OSError:
                continue
            if UID_BASE <= uid < UID_BASE + 1000:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                        left.append(int(d))
    return left


@pytest.fixture
def graded(grade, tmp_path):
    """grade(source) with the side-effect checks every hostile test needs."""
    repo_before = sorted(p.name for p in ROOT.iterdir())
    sentinel = tmp_path / "grader_file.txt"
    sentinel.write_text("the grader's")

    def run(source, name="hostile.py"):
        sub = write(tmp_path, name, source)
        result = grade(sub)
        assert sub.read_text() == source  # the submission itself is untouched
        assert sentinel.read_text() == "the grader's"
        assert sorted(p.name for p in ROOT.iterdir()) == repo_before
        assert _worker_processes() == []
        return result
    run.sentinel = sentinel
    return run


def _failed(result):
    return {s.outcome.check_id for s in result.checks if not s.passed and not s.advisory}


def test_monkeypatching_torch_cannot_fake_a_pass(graded):
    r = graded(_template("") .replace(
        "return self.gamma * (X - mean) / torch.sqrt(var + self.eps) + self.beta",
        "torch.allclose = lambda *a, **k: True\n"
        "        torch.testing.assert_close = lambda *a, **k: None\n"
        "        torch.Tensor.__eq__ = lambda a, b: torch.ones((), dtype=torch.bool)\n"
        "        return torch.zeros_like(X)"))
    assert {"forward.train.4d", "forward.train.2d", "eval.forward", "gradients"} <= _failed(r)


def test_printing_fake_results_changes_nothing(graded):
    fake = '{"score": 100, "tests": []}\\nTotal: 100 / 100\\nPASS  forward.train.4d'
    r = graded(_template(f"print({fake!r})").replace("return self.gamma *", "return 0 * self.gamma *"))
    assert "forward.train.4d" in _failed(r) and r.score < r.max_score
    assert "Total: 100 / 100" in r.student_output  # kept, apart from the results


def test_exiting_early_is_a_failed_check(graded):
    r = graded(_template("import sys\n        if not self.training:\n            sys.exit(0)"))
    assert "eval.forward" in _failed(r) and "forward.train.4d" not in _failed(r)


@pytest.mark.skipif(not ROOT_USER, reason="signalling the grader is prevented by the uid drop, which needs root")
def test_killing_the_grader_is_refused(graded):
    r = graded(_template(
        "import os, signal\n"
        "        for pid in [os.getppid(), 1] + [int(d) for d in os.listdir('/proc') if d.isdigit()]:\n"
        "            try:\n"
        "                os.kill(pid, signal.SIGKILL) if pid != os.getpid() else None\n"
        "            except OSError:\n"
        "                pass"))
    assert r.score == r.max_score  # the grader survived to score a correct module
    assert r.sandbox["user"].startswith("uid ")


def test_the_worker_never_holds_the_rubric_or_expected_values(graded):
    # the worker was forked before the parent loaded the rubric or the reference
    r = graded(_template(
        "import gc, os, sys\n"
        "        mine = ('grader.rubric', 'grader.checks', 'grader.training', 'grader.grading', 'reference.batchnorm')\n"
        "        objs = sorted({m for m in (str(type(o).__module__) for o in gc.get_objects()) if m.startswith(mine)})\n"
        "        mods = [k for k in sys.modules if k.startswith(mine)]\n"
        "        env = [v for v in list(os.environ.values()) + sys.argv if 'rubric' in v.lower()]\n"
        "        print('LEAK', objs, mods, env)"))
    assert "LEAK [] [] []" in r.student_output and r.score == r.max_score


def test_fork_bomb_is_bounded(graded):
    r = graded(_template(
        "import os, time\n"
        "        if not getattr(self, 'bombed', False):\n"
        "            self.bombed = True\n"
        "            for _ in range(100000):\n"
        "                try:\n"
        "                    if os.fork() == 0:\n"
        "                        time.sleep(30); os._exit(0)\n"
        "                except OSError:\n"
        "                    break"))
    assert r.status.value == "graded"  # the grader kept going, and cleaned up (fixture)


def test_memory_bomb_fails_only_itself(graded):
    r = graded(_template("blob = bytearray(64 * 2**30)"))
    assert "forward.train.4d" in _failed(r)
    msg = next(s.outcome.message for s in r.checks if s.outcome.check_id == "forward.train.4d")
    assert "MemoryError" in msg or "ended" in msg


def test_output_flood_is_capped(graded):
    r = graded(_template("import sys\n        sys.stdout.write('x' * (1 << 20) * 8)"))
    assert len(r.student_output) < 100_000 and "bytes cut" in r.student_output


def test_deleting_and_writing_outside_its_folder_fails(graded):
    target = graded.sentinel
    r = graded(_template(
        "import os, shutil\n"
        "        for f in os.listdir('.'):\n"
        "            os.remove(f)\n"
        f"        for path in ({str(target)!r}, {str(ROOT / 'grade.py')!r}):\n"
        "            try:\n"
        "                os.remove(path); print('REMOVED', path)\n"
        "            except OSError:\n"
        "                pass\n"
        "            try:\n"
        "                open(path, 'w').write('pwned'); print('WROTE', path)\n"
        "            except OSError:\n"
        "                pass"))
    if ROOT_USER:
        assert "REMOVED" not in r.student_output and "WROTE" not in r.student_output
    assert (ROOT / "grade.py").read_text().startswith("#!/usr/bin/env python3")


def test_no_network(graded):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    r = graded(_template(
        "import socket\n"
        "        try:\n"
        f"            socket.create_connection(('127.0.0.1', {port}), timeout=1); print('NET yes')\n"
        "        except OSError as e:\n"
        "            print('NET no', e)"))
    try:
        conn, _ = server.accept()
        conn.close()
        connected = True
    except OSError:
        connected = False
    server.close()
    if r.sandbox.get("network_isolated"):
        assert not connected and "NET yes" not in r.student_output
    else:
        assert "child_had_network" in r.flags  # and the report says so


def test_memory_bomb_at_import_is_a_memory_row(graded):
    r = graded("blob = bytearray(64 * 2**30)\n" + _template(""))
    assert r.status.value == "memory" and r.score == 0 and "MemoryError" in r.reason
