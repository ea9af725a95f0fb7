"""The trust boundary: student code runs only in the forked worker, which cannot reach the
grader, sees a scratch folder and a clean environment, and is gone when its time is up."""
import os
import pickle
import signal

import pytest
import torch

from conftest import TEMPLATE_OK, ZYGOTE, write
from grader.sandbox.inside import wire
from grader.sandbox.zygote import SandboxError


def _alive(pid):
    # a killed process may linger as a zombie until init reaps it: that is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _template(extra):
    return TEMPLATE_OK.replace("{extra}", extra)


def test_submission_cannot_import_the_grader_or_reference(tmp_path, grade):
    sub = write(tmp_path, "peek.py", _template(
        "import importlib\n"
        "        for m in ('reference.batchnorm', 'grader', 'grader.checks.battery'):\n"
        "            try:\n"
        "                importlib.import_module(m); print('IMPORTED', m)\n"
        "            except ImportError as e:\n"
        "                print('BLOCKED', m)\n"
        "        import sys; print('MODULES', sorted(k for k in sys.modules if k.startswith(('grader', 'reference'))))"))
    r = grade(sub)
    assert "IMPORTED" not in r.student_output
    assert "BLOCKED reference.batchnorm" in r.student_output and "MODULES []" in r.student_output
    assert r.score == r.max_score  # the attempt is harmless; the module itself is correct


def test_borrowed_class_is_refused(tmp_path, grade):
    sub = write(tmp_path, "borrow.py", "import torch\nBatchNorm2d = torch.nn.Identity\n")
    r = grade(sub)
    assert r.status.value == "error" and "must be defined in" in r.reason and r.score == 0


def test_worker_runs_in_a_scratch_copy_with_a_clean_environment(tmp_path, grade, monkeypatch):
    monkeypatch.setenv("BN_GRADER_SECRET", "hunter2")
    sub = write(tmp_path, "env.py", _template(
        "import os; print('CWD', os.getcwd()); print('ENV', sorted(os.environ)); print('FILES', os.listdir('.'))"))
    r = grade(sub)
    assert "hunter2" not in r.student_output and "BN_GRADER_SECRET" not in r.student_output
    cwd = r.student_output.split("CWD ", 1)[1].split()[0]
    assert cwd != str(tmp_path) and "bn-grade-" in cwd
    assert "FILES ['env.py']" in r.student_output
    assert not os.path.exists(cwd)  # removed after grading


def test_timeout_kills_every_process_it_started(tmp_path, quick_rubric):
    # a plain child, and a double-forked one in its own session: both must be gone
    sub = write(tmp_path, "spawner.py", _template(
        "import subprocess, time\n"
        "        p = subprocess.Popen(['sleep', '300'])\n"
        "        q = subprocess.Popen(['setsid', 'sh', '-c', 'sleep 301 & echo $!'], stdout=subprocess.PIPE)\n"
        "        escaped = q.stdout.readline().decode().strip()\n"
        "        print('PIDS', p.pid, escaped, flush=True)\n"
        "        time.sleep(300)"))
    s = ZYGOTE.spawn(str(sub), quick_rubric.limits)
    s.request({"op": "build", "handle": "a", "args": [3, 4]})
    with pytest.raises(SandboxError) as e:
        s.request({"op": "forward", "handle": "a", "x": torch.randn(2, 3, 2, 2), "mode": "train", "grad": True})
    assert e.value.kind == "timeout"
    pids = [int(p) for p in s.output(10000).split("PIDS ", 1)[1].split()[:2]]
    s.close(1000)
    for pid in [s.pid] + pids:
        assert not _alive(pid), pid


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
           "s": torch.tensor(2.5), "e": torch.empty(0, 4)}
    data = wire.encode(msg)
    hl, pl = wire.HEADER.unpack(data[:wire.HEADER.size])
    out = wire.decode(data[wire.HEADER.size:wire.HEADER.size + hl], data[wire.HEADER.size + hl:])
    assert torch.equal(out["y"], msg["y"]) and out["n"][:3] == [1, "a", None]
    assert torch.equal(out["n"][3]["z"], torch.arange(3)) and out["h"].dtype == torch.bfloat16
    assert out["s"].shape == () and out["e"].shape == (0, 4)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    with pytest.raises(TypeError):
        wire.encode({"x": Evil()})
    # a worker can only send bytes: a pickle, a lying size or an unknown dtype is refused
    with pytest.raises(wire.BadMessage):
        wire.decode(pickle.dumps({"y": 1}), b"")
    with pytest.raises(wire.BadMessage):
        wire.decode(b'{"m": {"t": {"__tensor__": 0, "dtype": "float32", "shape": [4]}}, "s": [8]}', b"\0" * 7)
    with pytest.raises(wire.BadMessage):
        wire.decode(b'{"m": {"t": {"__tensor__": 0, "dtype": "object", "shape": [1]}}, "s": [8]}', b"\0" * 8)
    with pytest.raises(wire.BadMessage):
        wire.decode(b'{"m": {"t": {"__tensor__": 0, "dtype": "float32", "shape": [3]}}, "s": [8]}', b"\0" * 8)


def test_exit_during_forward_fails_checks_and_keeps_grading(tmp_path, grade):
    sub = write(tmp_path, "quitter.py", _template(
        "import os\n        if X.dim() == 2:\n            os._exit(7)"))
    r = grade(sub)
    failed = {s.outcome.check_id: s.outcome.message for s in r.checks if not s.passed and not s.advisory}
    assert "forward.train.2d" in failed and "exit status 7" in failed["forward.train.2d"]
    assert "forward.train.4d" not in failed and r.status.value == "graded"


def test_worker_holds_no_grader_file_descriptors(tmp_path, grade):
    # only stdio and the channel to the parent: not the zygote's control socket, not the
    # grader's pipes
    sub = write(tmp_path, "fds.py", _template(
        "import os; print('FDS', sorted(int(f) for f in os.listdir('/proc/self/fd')))"))
    r = grade(sub)
    fds = eval(r.student_output.split("FDS ", 1)[1].splitlines()[0])
    extra = [f for f in fds if f > 2]
    assert len(extra) <= 2, fds  # the channel, and the descriptor listdir itself opened


def test_a_limit_shorter_than_the_fork_still_kills_the_worker(quick_rubric):
    # the kill can arrive before the worker has made its own process group
    import dataclasses
    from conftest import CORPUS
    limits = dataclasses.replace(quick_rubric.limits, load_seconds=0.0005)
    for _ in range(5):
        with pytest.raises(SandboxError) as e:
            ZYGOTE.spawn(str(CORPUS / "correct_var_mean.py"), limits)
        assert e.value.kind == "timeout"


def test_a_killed_or_stopped_zygote_is_replaced(tmp_path, quick_rubric):
    # where the uid drop cannot stop a worker from signalling its zygote (not root), the grader
    # must still finish: a dead or frozen zygote is replaced and the submission graded
    from grader.sandbox.zygote import Zygote

    class Quick(Zygote):
        CONTROL_TIMEOUT = 2.0
    z = Quick()
    try:
        sub = write(tmp_path, "ok.py", _template(""))
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            os.kill(z.pid, sig)
            with pytest.raises(SandboxError):
                z.spawn(str(sub), quick_rubric.limits)
            s = z.spawn(str(sub), quick_rubric.limits)  # the replacement works
            assert s.loaded["ok"]
            s.close(100)
        assert z.restarts == 2
    finally:
        z.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="per-worker uids need root")
def test_graders_side_by_side_never_share_a_worker_uid(tmp_path, quick_rubric):
    # a self-check next to a batch, or two shards on one machine: cleaning up one grader's
    # worker (kill every process of its uid) must not touch the other's
    from grader.sandbox.zygote import Zygote
    other = Zygote()
    try:
        sub = write(tmp_path, "ok.py", _template(""))
        a = ZYGOTE.spawn(str(sub), quick_rubric.limits)
        b = other.spawn(str(sub), quick_rubric.limits)
        assert a.loaded["sandbox"]["user"].split()[1] != b.loaded["sandbox"]["user"].split()[1]
        a.close(100)
        assert _alive(b.pid)
        assert b.request({"op": "build", "handle": "m", "args": [3, 4]})["ok"]
        b.close(100)
    finally:
        other.close()
