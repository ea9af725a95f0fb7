"""The spawned worker (grader/sandbox/spawned.py), forced on Linux: the path students' Windows
and macOS laptops take grades exactly as the sandbox does, and leaves nothing behind."""
import glob
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from conftest import CORPUS, ROOT, TEMPLATE_OK, ZYGOTE
from test_corpus import FILES, SLOW, assert_verdict

from grader.sandbox import spawned, zygote


@pytest.fixture(scope="module")
def grade_spawned(spawner, quick_rubric):
    from grader.grading import grade_file

    def run(path, rubric=None):
        return grade_file(path, rubric or quick_rubric, spawner)
    return run


def _summary(result):
    # everything a student or an instructor reads off a result, less times and captured paths
    checks = [(s.outcome.check_id, s.passed, s.score, s.max_score, s.outcome.passed,
               tuple(d.code for d in s.outcome.diagnoses)) for s in result.checks]
    return result.status.value, result.score, result.max_score, checks, sorted(result.not_run)


# the three hanging submissions cost a fresh interpreter per timed-out check here (about a
# minute together); how the spawned worker ends a hang is test_timeout_kills_the_whole_tree_...
QUICK = [p for p in FILES if p.name not in SLOW]


@pytest.mark.parametrize("path", QUICK, ids=[p.name for p in QUICK])
def test_corpus_grades_identically_to_the_sandbox(path, grade, grade_spawned):
    # the rubric's seed; the sandboxed result comes from the shared zygote (bubblewrap here)
    sandboxed, unconfined = grade(path), grade_spawned(path)
    assert_verdict(path, unconfined)
    assert _summary(unconfined) == _summary(sandboxed)
    assert unconfined.reason.splitlines()[:1] == sandboxed.reason.splitlines()[:1]


def test_results_say_the_run_was_unconfined(grade_spawned):
    r = grade_spawned(CORPUS / "correct_textbook.py")
    assert r.sandbox["engine"] == "none (spawned, unconfined)"
    assert r.sandbox["confined"] is False and r.sandbox["network_isolated"] is False
    assert "child_had_network" in r.flags
    from grader.output import terminal
    for lang, words in (("en", "unconfined"), ("zh", "未加沙箱")):
        text = terminal.render(r, lang, colour=False)
        assert words in text.splitlines()[1]


def _leftovers():
    tmp = tempfile.gettempdir()
    return set(glob.glob(os.path.join(tmp, "bn-grade-output-*")) + glob.glob(os.path.join(tmp, "bn-grade-work-*")))


def _running(pid) -> bool:
    # gone, or a zombie that whoever adopted it has not reaped yet (killed all the same)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; rlimits as Linux enforces them")


@LINUX
def test_timeout_kills_the_whole_tree_and_leaves_no_files(tmp_path, spawner, quick_rubric):
    from grader.grading import grade_file
    before = _leftovers()
    sub = tmp_path / "spawns.py"
    # a child that outlives its parent unless the grader kills the group, then a hang
    sub.write_text(TEMPLATE_OK.replace("{extra}", textwrap.dedent("""\
        import subprocess, sys
                if not hasattr(self, "child"):
                    self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
                    print("CHILD", self.child.pid, flush=True)
                while True:
                    pass""")))
    r = grade_file(sub, quick_rubric, spawner)
    pids = [int(line.split()[1]) for line in r.student_output.splitlines() if line.startswith("CHILD")]
    assert pids, r.student_output
    assert any("took longer than" in s.outcome.message for s in r.checks)
    time.sleep(0.5)
    for pid in pids:
        assert not _running(pid)
    # the spare worker started ahead holds its own files; none of the finished workers' remain
    spare = {spawner._spare.capture.name, spawner._spare.workdir} if spawner._spare else set()
    assert _leftovers() - before - spare == set()


@LINUX
def test_memory_is_bounded_on_linux(tmp_path, grade_spawned):
    sub = tmp_path / "hog.py"
    # used by the class, so the slicer keeps it (grader/slicing.py)
    sub.write_text("import torch\nBIG = torch.ones(16 << 30, dtype=torch.uint8)\n"
                   + TEMPLATE_OK.replace("{extra}", "BIG.numel()"))
    r = grade_spawned(sub)
    # 16 GB would fit on this machine unbounded; the address-space limit (4 GB more than the
    # warm interpreter holds) refuses it
    assert r.status.value in ("memory", "error"), (r.status, r.reason)
    assert "allocate" in r.reason or "MemoryError" in r.reason, r.reason
    assert "address space" in r.sandbox["limits"]


def test_a_stranger_on_the_port_is_turned_away():
    w = spawned._Worker(None)
    try:
        import socket
        rogue = socket.create_connection(("127.0.0.1", w.listener.getsockname()[1]))
        rogue.sendall(b"0" * 32 + b"\n")
        w.connect(120)
        assert w.hello["op"] == "hello" and w.hello["pid"] == w.proc.pid
        assert rogue.recv(1) == b""  # closed by the grader
        rogue.close()
    finally:
        w.kill()
        w.remove_capture()
    assert not os.path.exists(w.capture.name) and not os.path.exists(w.workdir)


def test_windows_job_object_layout():
    # JOBOBJECT_EXTENDED_LIMIT_INFORMATION is 144 bytes on 64-bit Windows; SetInformationJobObject
    # refuses any other size, so a wrong field would fail only there
    import ctypes
    info = spawned.extended_limit_information()
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ctypes.sizeof(info) == 144
        assert info.JobMemoryLimit.offset == 120 and info.basic.offset == 0


@pytest.mark.parametrize("platform, words", [("win32", "job object"), ("darwin", "memory and processes not bounded"),
                                             ("linux", "address space")])
def test_limits_are_said_per_platform(platform, words):
    assert words in spawned.limits_text(platform)
    assert "could not" in spawned.limits_text("win32", job="access denied")


def test_mode_selection(monkeypatch, capsys):
    from grader import cli
    args = cli._parser().parse_args([str(CORPUS / "correct_textbook.py")])
    monkeypatch.delenv("BN_GRADE_SANDBOX", raising=False)
    monkeypatch.setattr(zygote, "forks", lambda: False)  # as on Windows and macOS
    assert cli._sandbox_mode(args, batch=False) == "spawned"
    assert "unconfined" in capsys.readouterr().err
    with pytest.raises(cli.UsageError) as e:
        cli._sandbox_mode(args, batch=True)
    assert "--unconfined" in str(e.value) and "bubblewrap" in str(e.value)
    args.unconfined = True
    assert cli._sandbox_mode(args, batch=True) == "spawned"
    monkeypatch.setenv("BN_GRADE_SANDBOX", "spawned")
    args.unconfined = False
    assert cli._sandbox_mode(args, batch=False) == "spawned"


def test_windows_path_imports_no_posix_module(tmp_path):
    # what runs on Windows, with fcntl, resource, pwd and grp made unimportable: the CLI grades
    # through the spawned worker, and the worker's own modules import without them too
    script = textwrap.dedent(f"""
        import sys
        for name in ("fcntl", "resource", "pwd", "grp", "termios"):
            sys.modules[name] = None
        sys.path.insert(0, {str(ROOT)!r})
        import importlib.util, os
        inside = os.path.join({str(ROOT)!r}, "grader", "sandbox", "inside")
        spec = importlib.util.spec_from_file_location("bn_inside", os.path.join(inside, "__init__.py"),
                                                      submodule_search_locations=[inside])
        sys.modules["bn_inside"] = importlib.util.module_from_spec(spec)
        import bn_inside.spawned, bn_inside.worker, bn_inside.handlers, bn_inside.wire
        from grader import cli
        sys.exit(cli.main(sys.argv[1:]))
    """)
    out = tmp_path / "r.json"
    env = {**os.environ, "BN_GRADE_SANDBOX": "spawned"}
    before = _leftovers()
    p = subprocess.run([sys.executable, "-c", script, str(CORPUS / "mistake_reversed_momentum.py"), "--no-train",
                        "--json", str(out)], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    import json
    d = json.loads(out.read_text())
    assert d["extra_data"]["sandbox"]["engine"] == "none (spawned, unconfined)"
    assert 0 < d["score"] < d["extra_data"]["max_score"]
    # the worker started ahead and never used is gone with its files when the CLI exits
    assert _leftovers() - before == set()
