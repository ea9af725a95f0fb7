"""How idle OpenMP threads wait (grader/cpus.py): a short spin where the grader's runs have the
cores to themselves, sleeping at once where jobs share them, the user's own setting above both;
the grader decides before torch loads and the sandbox's zygote is started with the same."""
import os
import shutil
import sys

import pytest

from conftest import CORPUS
from grader import cpus
from grader.cli import main
from grader.sandbox import engine


@pytest.mark.parametrize("exclusive, platform, environ, expected", [
    (True, "linux", {}, {"GOMP_SPINCOUNT": cpus.SPIN_COUNT}),
    (False, "linux", {}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    # LLVM's and Intel's OpenMP read other variables: unmeasured there, so they sleep
    (True, "darwin", {}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    (True, "win32", {}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    # what the user set wins, both ways
    (True, "linux", {"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    (False, "linux", {"GOMP_SPINCOUNT": "300000", "PATH": "/bin"}, {"GOMP_SPINCOUNT": "300000"}),
])
def test_the_wait_policy_follows_the_plan_and_the_user(exclusive, platform, environ, expected):
    assert cpus.openmp_wait_env(exclusive, environ=environ, platform=platform) == expected


@pytest.fixture
def bare_environ(monkeypatch):
    # the grader's own environment without any OpenMP setting (the tests' conftest sets one)
    env = {k: v for k, v in os.environ.items() if k not in cpus.OPENMP_KEYS}
    monkeypatch.setattr(os, "environ", env)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp's spin is set on Linux only")
def test_one_submission_spins_and_a_class_in_parallel_sleeps(bare_environ, tmp_path, capsys):
    assert main([str(CORPUS / "correct_textbook.py"), "--no-train", "--quiet"]) == 0
    assert bare_environ.get("GOMP_SPINCOUNT") == cpus.SPIN_COUNT and "OMP_WAIT_POLICY" not in bare_environ
    for k in cpus.OPENMP_KEYS:
        bare_environ.pop(k, None)
    subs = tmp_path / "class"
    subs.mkdir()
    shutil.copy(CORPUS / "correct_textbook.py", subs / "alice.py")
    assert main([str(subs), "--out", str(tmp_path / "out"), "--no-train", "--quiet", "--jobs", "2"]) == 0
    assert bare_environ.get("OMP_WAIT_POLICY") == "PASSIVE" and "GOMP_SPINCOUNT" not in bare_environ


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_the_sandbox_zygote_is_started_with_the_graders_policy(bare_environ):
    bare_environ["GOMP_SPINCOUNT"] = "1234"
    launch = engine.bubblewrap(0, False)
    pairs = [tuple(launch.argv[i + 1:i + 3]) for i, a in enumerate(launch.argv) if a == "--setenv"]
    assert ("GOMP_SPINCOUNT", "1234") in pairs and not any(k == "OMP_WAIT_POLICY" for k, _ in pairs)
    del bare_environ["GOMP_SPINCOUNT"]
    env = engine._env()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in env
    if launch.uid_lock is not None:  # as root a uid is claimed for the sandbox: give it back
        os.close(launch.uid_lock)
