"""The trust boundary: student code runs only in a worker inside the bubblewrap sandbox, which
sees a private /tmp, a clean environment and none of the grader's files, and is gone when its
time is up. Also the unconfined fallback, and the messages' format."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TEMPLATE_OK, ZYGOTE, write
from grader.sandbox.inside import wire
from grader.sandbox.zygote import SandboxError, Zygote
from test_hostile import descendants, needs_sandbox


def _template(extra):
    return TEMPLATE_OK.replace("{extra}", extra)


def test_borrowed_class_is_refused(tmp_path, grade):
    sub = write(tmp_path, "borrow.py", "import torch\nBatchNorm2d = torch.nn.Identity\n")
    r = grade(sub)
    assert r.status.value == "error" and "must be defined in" in r.reason and r.score == 0


@needs_sandbox
def test_worker_runs_in_a_private_folder_with_a_clean_environment(tmp_path, grade, monkeypatch):
    monkeypatch.setenv("BN_GRADER_SECRET", "hunter2")
    sub = write(tmp_path, "env.py", _template(
        "import os; print('CWD', os.getcwd()); print('ENV', sorted(os.environ)); print('FILES', os.listdir('.'))\n"
        "        print('TMP', os.listdir('/tmp'), 'HOME', os.listdir(os.path.expanduser('~')))"))
    r = grade(sub)
    assert "hunter2" not in r.student_output and "BN_GRADER_SECRET" not in r.student_output
    assert "CWD /tmp/work" in r.student_output
    assert "FILES ['env.py']" in r.student_output  # and no __pycache__: nothing is compiled to disk
    assert "TMP ['work']" in r.student_output
    assert not (tmp_path / "__pycache__").exists()
    assert r.sandbox["engine"].startswith("bubblewrap") and r.sandbox["confined"] is True


def test_timeout_kills_every_process_it_started(tmp_path, quick_rubric):
    # a plain child, and a double-forked one in its own session: both must be gone
    sub = write(tmp_path, "spawner.py", _template(
        "import subprocess, time\n"
        "        if self.training:\n"
        "            self.p = subprocess.Popen(['sleep', '300'])\n"
        "            q = subprocess.Popen(['setsid', 'sh', '-c', 'sleep 301 & echo $!'], stdout=subprocess.PIPE)\n"
        "            print('ESCAPED', q.stdout.readline().decode().strip(), flush=True)\n"
        "        else:\n"
        "            time.sleep(300)"))
    before = descendants()
    s = ZYGOTE.spawn(str(sub), quick_rubric.limits)
    s.request({"op": "build", "handle": "a", "args": [3, 4]})
    x = torch.randn(2, 3, 2, 2)
    assert s.request({"op": "forward", "handle": "a", "x": x, "mode": "train", "grad": True})["ok"]
    assert "ESCAPED" in s.output(10000)
    # the worker, its intermediate, sleep and the escaped sleep: all still below this process
    assert len(descendants() - before) >= 4
    with pytest.raises(SandboxError) as e:
        s.request({"op": "forward", "handle": "a", "x": x, "mode": "eval", "grad": False})
    assert e.value.kind == "timeout"
    s.close(1000)
    deadline = time.monotonic() + 5
    while descendants() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants() - before == set()


def test_hang_in_forward_is_a_failed_check_not_a_stuck_grader(tmp_path, grade):
    sub = write(tmp_path, "slow_eval.py", _template(
        "import time\n        if not self.training:\n            time.sleep(60)"))
    r = grade(sub)
    failed = {s.outcome.check_id for s in r.checks if not s.passed and not s.advisory}
    assert "eval.forward" in failed and "forward.train.4d" not in failed
    assert any("took longer than" in s.outcome.message for s in r.checks)
    assert r.seconds < 25


def test_wire_carries_only_json_values_and_plain_tensors():
    msg = {"y": torch.randn(2, 3), "n": [1, "a", None, {"z": torch.arange(3)}], "h": torch.ones(2).bfloat16(),
           "s": torch.tensor(2.5), "e": torch.empty(0, 4), "t": torch.randn(4, 3).t()}
    data = wire.encode(msg)
    hl, pl = wire.HEADER.unpack(data[:wire.HEADER.size])
    out = wire.decode(data[wire.HEADER.size:wire.HEADER.size + hl], data[wire.HEADER.size + hl:])
    assert torch.equal(out["y"], msg["y"]) and out["n"][:3] == [1, "a", None]
    assert torch.equal(out["n"][3]["z"], torch.arange(3)) and out["h"].dtype == torch.bfloat16
    assert out["s"].shape == () and out["e"].shape == (0, 4) and torch.equal(out["t"], msg["t"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    with pytest.raises(TypeError):
        wire.encode({"x": Evil()})
    # a worker can only send bytes: a pickle, a lying size or an unknown dtype is refused
    bad = [(pickle.dumps({"y": 1}), b""),
           (b'{"m": {"t": {"__tensor__": 0, "dtype": "float32", "shape": [4]}}, "s": [8]}', b"\0" * 7),
           (b'{"m": {"t": {"__tensor__": 0, "dtype": "object", "shape": [1]}}, "s": [8]}', b"\0" * 8),
           (b'{"m": {"t": {"__tensor__": 0, "dtype": "float32", "shape": [3]}}, "s": [8]}', b"\0" * 8),
           # a shape that does not account for its bytes: refused before anything is allocated
           (b'{"m": {"t": {"__tensor__": 0, "dtype": "float64", "shape": [100000, 100000]}}, "s": [0]}', b""),
           (b'{"m": {"t": {"__tensor__": 0, "dtype": "float32", "shape": [-1, 2]}}, "s": [8]}', b"\0" * 8)]
    for head, payload in bad:
        with pytest.raises(wire.BadMessage):
            wire.decode(head, payload)


def test_exit_during_forward_fails_checks_and_keeps_grading(tmp_path, grade):
    sub = write(tmp_path, "quitter.py", _template(
        "import os\n        if X.dim() == 2:\n            os._exit(7)"))
    r = grade(sub)
    failed = {s.outcome.check_id: s.outcome.message for s in r.checks if not s.passed and not s.advisory}
    assert "forward.train.2d" in failed and "exit status 7" in failed["forward.train.2d"]
    assert "forward.train.4d" not in failed and r.status.value == "graded"


def test_worker_holds_no_grader_file_descriptors(tmp_path, grade):
    # only stdio and the channel to the grader: not the zygote's control socket, not the
    # grader's pipes, not its own output file
    sub = write(tmp_path, "fds.py", _template(
        "import os\n"
        "        open_fds = []\n"
        "        for fd in range(0, 1024):\n"
        "            try:\n"
        "                os.fstat(fd); open_fds.append(fd)\n"
        "            except OSError:\n"
        "                pass\n"
        "        print('FDS', open_fds)"))
    r = grade(sub)
    fds = eval(r.student_output.split("FDS ", 1)[1].splitlines()[0])
    assert len([f for f in fds if f > 2]) == 1, fds


def test_a_limit_shorter_than_the_spawn_still_kills_the_worker(quick_rubric):
    import dataclasses
    from conftest import CORPUS
    before = descendants()
    limits = dataclasses.replace(quick_rubric.limits, load_seconds=0.0005)
    for _ in range(5):
        with pytest.raises(SandboxError) as e:
            ZYGOTE.spawn(str(CORPUS / "correct_var_mean.py"), limits)
        assert e.value.kind == "timeout"
    assert descendants() - before == set()


@needs_sandbox
def test_a_killed_or_stopped_zygote_is_replaced(tmp_path, quick_rubric):
    # the grader must finish whatever becomes of its zygote: a dead or frozen one is replaced
    class Quick(Zygote):
        CONTROL_TIMEOUT = 2.0
    z = Quick()
    try:
        sub = write(tmp_path, "ok.py", _template(""))
        z.spawn(str(sub), quick_rubric.limits).close(100)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            inside = sorted(descendants(z.proc.pid))  # the sandbox's init and the zygote
            os.kill(inside[-1] if sig == signal.SIGSTOP else z.proc.pid, sig)
            with pytest.raises(SandboxError):
                z.spawn(str(sub), quick_rubric.limits)
            s = z.spawn(str(sub), quick_rubric.limits)  # the replacement works
            assert s.loaded["ok"]
            s.close(100)
        assert z.restarts == 2
    finally:
        z.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox uids are claimed only as root")
@needs_sandbox
def test_graders_side_by_side_never_share_a_sandbox_uid(tmp_path, quick_rubric):
    other = Zygote()
    try:
        sub = write(tmp_path, "ok.py", _template(""))
        a = ZYGOTE.spawn(str(sub), quick_rubric.limits)
        b = other.spawn(str(sub), quick_rubric.limits)
        assert a.loaded["sandbox"]["user"].split()[1] != b.loaded["sandbox"]["user"].split()[1]
        a.close(100)
        assert b.request({"op": "build", "handle": "m", "args": [3, 4]})["ok"]
        b.close(100)
    finally:
        other.close()


def test_unconfined_mode_grades_the_same_and_says_so(tmp_path, quick_rubric):
    from conftest import CORPUS
    from grader.grading import grade_file
    z = Zygote("unconfined")
    try:
        for name in ("correct_textbook.py", "mistake_eps_outside.py"):
            a = grade_file(CORPUS / name, quick_rubric, z)
            b = grade_file(CORPUS / name, quick_rubric, ZYGOTE)
            assert (a.score, a.status) == (b.score, b.status)
            assert a.sandbox["confined"] is False and a.sandbox["engine"] == "none (unconfined)"
            assert "child_had_network" in a.flags
    finally:
        z.close()
    assert z.launch.cleanup and not any(os.path.exists(p) for p in z.launch.cleanup)


def _cli(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, str(ROOT / "grade.py")] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_without_the_engine_a_self_check_runs_unconfined_and_class_grading_refuses(tmp_path):
    from conftest import CORPUS
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "alice.py").write_text((CORPUS / "correct_var_mean.py").read_text())
    no_engine = {"BN_GRADE_BWRAP": str(tmp_path / "no-bwrap-here")}
    r = _cli([str(CORPUS / "correct_var_mean.py"), "--no-train", "--quiet"], no_engine, tmp_path)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("bn-grade")]
    assert len(notes) == 1 and "unconfined" in notes[0]
    r = _cli([str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--no-train", "--quiet"], no_engine, tmp_path)
    assert r.returncode == 2 and "bubblewrap" in r.stderr and "--unconfined" in r.stderr
    assert not (tmp_path / "out" / "gradebook.csv").exists()
    r = _cli([str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--no-train", "--quiet", "--unconfined"],
             no_engine, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "gradebook.csv").exists()


def test_modules_the_zygote_never_imported_still_import(tmp_path, grade):
    # as root, bubblewrap makes the parents of its mount points 0700: a module the zygote had
    # not imported before dropping to its uid would be "not found" inside (numpy, a stdlib module)
    sub = write(tmp_path, "imports.py", "import colorsys\nimport wave\n" + _template(
        "import fractions, decimal, statistics\n"
        "        assert colorsys.rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1) and statistics.mean([1, 3]) == 2"))
    r = grade(sub)
    assert r.status.value == "graded" and r.score == r.max_score, r.reason
