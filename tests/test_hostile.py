"""Hostile submissions, one per attack, graded through the real sandbox. Each test asserts the
graded outcome; the fixture asserts that nothing of the grader's changed and that no process
the submission started is left (counting only this test process's own descendants, so other
graders on the machine are never looked at). As root this file runs as it is and, once more,
as an ordinary user (test_hostile_suite_as_an_ordinary_user); in CI both halves run."""
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TEMPLATE_OK, ZYGOTE, write

CONFINED = ZYGOTE.confined
needs_sandbox = pytest.mark.skipif(not CONFINED and not os.environ.get("CI"),
                                   reason="bubblewrap cannot run here (in CI it must)")


def _template(extra):
    return TEMPLATE_OK.replace("{extra}", extra)


def _children():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                kids.setdefault(int(fields[1]), []).append(int(d))
    return kids


def descendants(pid=None):
    """Live processes below pid (this test process by default)."""
    kids, out, todo = _children(), set(), [pid or os.getpid()]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def _tree_digest(folder):
    # every file name of the grader, and the contents of its entry point and its sandbox (the
    # checks and outputs are edited while developers run these tests; the targeted test below
    # reads the template and module a submission tries to overwrite)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(folder)).encode())
            if p.name == "__init__.py" and p.parent == folder or "sandbox" in p.parts:
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def graded(grade, tmp_path):
    """grade(source) with the side-effect checks every hostile test needs."""
    classmate = tmp_path / "OUT" / "classmate"
    classmate.mkdir(parents=True)
    (classmate / "results.json").write_text('{"score": 40}')
    before = descendants()
    tmp_before = set(os.listdir("/tmp"))
    grader_digest = _tree_digest(ROOT / "grader")

    def run(source, name="hostile.py"):
        sub = write(tmp_path, name, source)
        result = grade(sub)
        assert sub.read_text() == source  # the submission itself is untouched
        assert (classmate / "results.json").read_text() == '{"score": 40}'
        assert sorted(p.name for p in (tmp_path / "OUT").iterdir()) == ["classmate"]  # no phantom student
        assert _tree_digest(ROOT / "grader") == grader_digest
        deadline = time.monotonic() + 5
        while descendants() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert descendants() - before == set(), "a process the submission started outlived its grading"
        # no scratch copy of a submission anywhere in the machine's /tmp
        assert {n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith("bn-grade")} == set()
        return result
    run.tmp = tmp_path
    run.classmate = classmate
    return run


def _failed(result):
    return {s.outcome.check_id for s in result.checks if not s.passed and not s.advisory}


def test_monkeypatching_torch_cannot_fake_a_pass(graded):
    r = graded(_template("").replace(
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


@needs_sandbox
def test_classmates_results_and_the_class_folder_do_not_exist_inside(graded):
    out = graded.tmp / "OUT"
    looked = [str(graded.classmate / "results.json"), str(ROOT / "reference" / "batchnorm.py"),
              str(ROOT / "rubrics" / "batchnorm.yaml"), str(graded.tmp)]
    written = [str(graded.classmate / "results.json"), str(out / "phantom" / "results.json")]
    r = graded(_template(
        "import os\n"
        "        if not getattr(type(self), 'probed', False):\n"
        "            type(self).probed = True\n"
        f"            for p in {looked!r}:\n"
        "                print('EXISTS' if os.path.exists(p) else 'ABSENT', p)\n"
        f"            for p in {written!r}:\n"
        "                try:\n"
        "                    os.makedirs(os.path.dirname(p), exist_ok=True)\n"
        "                    open(p, 'w').write('{\"score\": 100}')\n"
        "                except OSError:\n"
        "                    pass"))
    # the class folder is not there to see; what it wrote went to its own private /tmp and
    # vanished with it (the fixture checks the real OUT: no phantom, the classmate untouched)
    assert "EXISTS" not in r.student_output and r.student_output.count("ABSENT") == 4


@needs_sandbox
def test_reading_the_reference_a_private_rubric_or_a_classmate_finds_nothing(graded):
    secret = graded.tmp / "private.yaml"
    secret.write_text("seed: 987654321  # SECRET\n")
    other = graded.tmp / "classmate.py"
    other.write_text("# the classmate's work\n")
    r = graded(_template(
        "import glob\n"
        f"        for p in ({str(secret)!r}, {str(other)!r}, {str(ROOT / 'reference' / 'batchnorm.py')!r}):\n"
        "            try:\n"
        "                print('READ', open(p).read()[:40])\n"
        "            except OSError as e:\n"
        "                print('NOREAD', type(e).__name__)\n"
        f"        print('GLOB', glob.glob({str(graded.tmp) + '/*'!r}), glob.glob('/root/*'), glob.glob({str(ROOT) + '/*'!r}))"))
    assert "READ" not in r.student_output.replace("NOREAD", "")
    assert "987654321" not in r.student_output and "GLOB [] [] []" in r.student_output


def test_submission_cannot_import_the_grader_or_reference(graded):
    r = graded(_template(
        "import importlib\n"
        "        for m in ('reference.batchnorm', 'reference', 'grader', 'grader.checks', 'rubrics') * (X.dim() == 2):\n"
        "            try:\n"
        "                mod = importlib.import_module(m); print('IMPORTED', m, getattr(mod, '__file__', None))\n"
        "            except ImportError:\n"
        "                print('ABSENT', m)"))
    assert "IMPORTED" not in r.student_output and "ABSENT reference.batchnorm" in r.student_output
    assert r.score == r.max_score


@needs_sandbox
def test_killing_or_stopping_the_grader_and_its_zygote_is_impossible(graded):
    r = graded(_template(
        "import os, signal\n"
        "        seen = [int(d) for d in os.listdir('/proc') if d.isdigit()]\n"
        "        print('PIDS', os.getpid(), os.getppid(), seen)\n"
        "        for sig in (signal.SIGSTOP, signal.SIGKILL) * (not getattr(type(self), 'tried', False)):\n"
        "            type(self).tried = True\n"
        "            for pid in [os.getppid(), 1, 2, 3] + seen + list(range(2, 200)):\n"
        "                try:\n"
        "                    if pid != os.getpid():\n"
        "                        os.kill(pid, sig); print('SIGNALLED', pid)\n"
        "                except OSError:\n"
        "                    pass"))
    # PID 1 of its own namespace: no parent, no other process to see or signal
    assert "PIDS 1 0 []" in r.student_output
    # its parent is pid 0 (outside its namespace): kill(0) reaches its own process group alone
    assert {line for line in r.student_output.splitlines() if line.startswith("SIGNALLED")} <= {"SIGNALLED 0"}
    assert r.score == r.max_score
    assert ZYGOTE.proc.poll() is None


@needs_sandbox
def test_a_deep_process_chain_does_not_outlive_its_grading(graded):
    target = graded.classmate / "results.json"
    r = graded(_template(
        "import os, time\n"
        "        if not getattr(type(self), 'chained', False):\n"
        "            type(self).chained = True\n"
        "            if os.fork() == 0:\n"
        "                try:\n"
        "                    for depth in range(50):\n"
        "                        if os.fork() != 0:\n"
        "                            time.sleep(600)\n"
        "                            break\n"
        "                        if depth % 2:\n"
        "                            os.setsid()\n"
        "                    else:\n"
        "                        time.sleep(3)\n"
        f"                        open({str(target)!r}, 'w').write('rewritten')\n"
        "                finally:\n"
        "                    os._exit(0)"))
    assert r.status.value == "graded"
    time.sleep(3.5)  # longer than the chain's own wait: it must be gone, not merely slow
    assert target.read_text() == '{"score": 40}'


@needs_sandbox
def test_the_venv_the_checkout_and_the_cache_cannot_be_written(graded):
    import site
    targets = [os.path.join(site.getsitepackages()[0], "zz_bn_evil.pth"), str(ROOT / "grader" / "zz_evil.py"),
               str(ROOT / "grader" / "output" / "templates" / "report.html.j2"),
               os.path.expanduser("~/.cache/bn-grader/zz_poison.pt"), os.path.join(sys.prefix, "zz_evil")]
    template_before = (ROOT / "grader" / "output" / "templates" / "report.html.j2").read_bytes()
    r = graded(_template(
        "import os\n"
        f"        for p in {targets!r}:\n"
        "            try:\n"
        "                os.makedirs(os.path.dirname(p), exist_ok=True)\n"
        "                open(p, 'a').write('import os; os.system(\"echo pwned\")'); print('WROTE', p)\n"
        "            except OSError as e:\n"
        "                print('REFUSED', type(e).__name__)"))
    assert "WROTE" not in r.student_output and r.student_output.count("REFUSED") >= len(targets)
    for p in targets:
        assert not p.endswith("zz_evil") or not os.path.exists(p)
    assert not os.path.exists(targets[0]) and not os.path.exists(targets[3])
    assert (ROOT / "grader" / "output" / "templates" / "report.html.j2").read_bytes() == template_before


HELD_BY_THE_GRADER = []


@needs_sandbox
def test_no_grader_environment_or_memory_reaches_the_worker(grade, tmp_path, monkeypatch, quick_rubric):
    # a token in the grader's environment and a secret in its memory when the sandbox starts
    from grader.grading import grade_file
    from grader.sandbox.zygote import Zygote
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_SECRETTOKEN123")
    HELD_BY_THE_GRADER.append("SECRET-MARKER-" + "1f2e3d")  # in this process's memory
    z = Zygote()
    try:
        sub = write(tmp_path, "snoop.py", _template(
            "import gc, os, sys\n"
            "        env = dict(os.environ)\n"
            "        try:\n"
            "            env_file = open('/proc/self/environ', 'rb').read()\n"
            "        except OSError:\n"
            "            env_file = b''\n"
            "        needle = '1f2e' + '3d'\n"
            "        strings = [x for o in gc.get_objects() if isinstance(o, (list, tuple, dict))\n"
            "                   for x in (o.values() if isinstance(o, dict) else o)\n"
            "                   if isinstance(x, str) and needle in x and x is not needle]\n"
            "        print('ENV', sorted(env), env_file, 'ARGV', sys.argv, 'FOUND', len(strings))"))
        r = grade_file(sub, quick_rubric, z)
    finally:
        z.close()
    out = r.student_output
    assert "ghp_SECRETTOKEN123" not in out and "GITHUB_TOKEN" not in out
    assert "ENV ['HOME', 'LANG', 'OMP_NUM_THREADS', 'PATH', 'TMPDIR']" in out
    assert "FOUND 0" in out
    assert str(tmp_path) not in out and r.score == r.max_score


def test_fork_bomb_is_bounded(graded):
    r = graded(_template(
        "import os, time\n"
        "        if not getattr(self, 'bombed', False):\n"
        "            self.bombed = True\n"
        "            n = 0\n"
        "            for _ in range(100000):\n"
        "                try:\n"
        "                    if os.fork() == 0:\n"
        "                        time.sleep(30); os._exit(0)\n"
        "                    n += 1\n"
        "                except OSError:\n"
        "                    break\n"
        "            print('FORKED', n)"))
    assert r.status.value == "graded"  # the grader kept going, and cleaned up (fixture)
    counts = [int(line.split()[1]) for line in r.student_output.splitlines() if line.startswith("FORKED")]
    assert counts and max(counts) < 200


def test_memory_bomb_fails_only_itself(graded):
    r = graded(_template("blob = bytearray(64 * 2**30)"))
    assert "forward.train.4d" in _failed(r)
    msg = next(s.outcome.message for s in r.checks if s.outcome.check_id == "forward.train.4d")
    assert "MemoryError" in msg or "ended" in msg


def test_output_flood_is_capped(graded):
    r = graded(_template("import sys\n        sys.stdout.write('x' * (1 << 20) * 8)"))
    assert len(r.student_output) < 100_000 and "bytes cut" in r.student_output


@needs_sandbox
def test_disk_is_bounded(graded):
    r = graded(_template(
        "import os\n"
        "        try:\n"
        "            with open('fill', 'wb') as f:\n"
        "                for _ in range(4096):\n"
        "                    f.write(b'x' * (1 << 20))\n"
        "        except OSError as e:\n"
        "            print('FULL', e.errno, os.path.getsize('fill') >> 20)\n"
        "        for where in ('/tmp/outside', '/fill', '/usr/fill'):\n"
        "            try:\n"
        "                open(where, 'w').write('x'); print('WROTE', where)\n"
        "            except OSError:\n"
        "                pass"))
    full = [line for line in r.student_output.splitlines() if line.startswith("FULL")]
    assert full and int(full[0].split()[2]) <= 128 and "WROTE" not in r.student_output


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
    # the layer reads blob, so the slice keeps it and it runs at import
    r = graded("blob = bytearray(64 * 2**30)\n" + _template("len(blob)"))
    assert r.status.value == "memory" and r.score == 0 and "MemoryError" in r.reason


# ---------------------------------------------------------------------------- the channel

_FORGE = '''
import json, os, stat, struct
def _forge(msg, payload=b""):
    head = json.dumps(msg).encode()
    data = struct.pack("!QQ", len(head), len(payload)) + head + payload
    for fd in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, data)
        except OSError:
            pass
'''


def _forging(call):
    # the forged message goes out from inside forward, ahead of the worker's own reply
    return _FORGE + _template("_forge_once(self)") + f"""

def _forge_once(layer):
    if not getattr(type(layer), 'forged', False):
        type(layer).forged = True
        {call}
"""


def test_a_reply_declaring_a_huge_tensor_is_refused_before_allocation(graded):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = graded(_forging('_forge({"m": {"ok": True, "y": {"__tensor__": 0, "dtype": "float64", '
                        '"shape": [100000, 100000]}}, "s": [0]})'))
    msgs = [s.outcome.message for s in r.checks if "unreadable reply" in s.outcome.message]
    assert msgs and r.status.value == "graded" and r.score < r.max_score
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 1 << 20  # KiB: under 1 GiB more


def test_a_reply_with_fields_of_the_wrong_type_is_refused(graded):
    r = graded(_forging('_forge({"m": {"ok": True, "builtin_ops": [{"x": 1}]}, "s": []})'))
    msgs = [s.outcome.message for s in r.checks if "unreadable reply" in s.outcome.message]
    assert msgs and r.status.value == "graded" and r.score < r.max_score


def test_a_worker_that_stops_reading_cannot_hang_the_grader():
    from grader.sandbox.inside import wire
    import torch
    ours, theirs = socket.socketpair()  # nobody ever reads theirs
    ours.setblocking(False)
    t0 = time.monotonic()
    with pytest.raises(wire.ChannelTimeout):
        wire.send(ours.fileno(), {"x": torch.zeros(16 << 20, dtype=torch.uint8)}, time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 5
    ours.close()
    theirs.close()


def test_an_oversized_source_is_refused_without_parsing(tmp_path, grade):
    sub = tmp_path / "huge.py"
    sub.write_text(TEMPLATE_OK.replace("{extra}", "") + "\n# padding\n" + "x = 1\n" * 400_000)
    r = grade(sub)
    assert r.status.value == "error" and r.score == 0 and "larger than" in r.reason


# ---------------------------------------------------------------------------- clean exit

@needs_sandbox
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_every_worker_is_gone_when_the_grader_ends(tmp_path, sig):
    sub = write(tmp_path, "hang.py", _template("import time\n        time.sleep(600)"))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    tmp_before = set(os.listdir("/tmp"))
    grader = subprocess.Popen([sys.executable, str(ROOT / "grade.py"), str(sub), "--no-train", "--quiet"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        # bwrap x2, the zygote, the worker and its parent, for a while: grading, not starting up
        while time.monotonic() < deadline:
            if len(descendants(grader.pid)) >= 5:
                time.sleep(1.5)
                if len(descendants(grader.pid)) >= 5:
                    break
            time.sleep(0.1)
        started = descendants(grader.pid)
        assert len(started) >= 5
        grader.send_signal(sig)
        grader.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{p}") and _state(p) not in "ZX" for p in started) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in started if os.path.exists(f"/proc/{p}") and _state(p) not in "ZX"] == []
        # nothing in /tmp either (a .py needs no scratch folder, so even SIGKILL leaves none)
        assert {n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith("bn-grade")} == set()
    finally:
        if grader.poll() is None:
            grader.kill()


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


# ---------------------------------------------------------------------------- the same as a user

USER = "bn-grade-test"


@pytest.mark.skipif(os.geteuid() != 0, reason="run as an ordinary user already (creating one needs root)")
def test_hostile_suite_as_an_ordinary_user(tmp_path):
    from ordinary_user import run_as_user
    r = run_as_user(USER, ["tests/test_hostile.py", "tests/test_sandbox.py", "-x", "-q", "-rs",
                           "-k", "not ordinary_user"])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
    # the one test that needs root (claimed uids) is the only one an ordinary user skips
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("only as root" in line for line in skips) and len(skips) <= 1, skips
