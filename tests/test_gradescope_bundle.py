"""`bn-grade gradescope-bundle` end to end in a simulated /autograder root: the zip the command
writes is unpacked into ROOT/source, its setup.sh builds the grader's venv (apt skipped, no
network: the machine's torch is reused through --system-site-packages, as setup.sh reuses one
already in an image), and its run_autograder grades a submission, then fails in three ways,
each time leaving a results.json.
"""
import json
import os
import sys
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import CORPUS
from grader.cli import main


def _env(root):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BN_GRADESCOPE_ROOT=str(root), BN_SETUP_SKIP_APT="1", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def autograder():
    if sys.prefix != sys.base_prefix and not os.environ.get("CI"):
        # setup.sh builds its venv from `python3` with --system-site-packages, as in Gradescope's
        # image; from inside a venv that sees the base Python's packages, without this venv's
        # torch, and installing torch would need the network (CI runs it from the base Python)
        pytest.skip("the suite runs in a venv: setup.sh's venv could not see its torch offline")
    # not under /tmp: the sandbox mounts a private /tmp over it (the venv would vanish inside)
    base = Path(tempfile.mkdtemp(prefix="bn-grade-ag-", dir=os.environ.get("BN_TEST_VENV_ROOT", "/var/tmp")))
    try:
        private = base / "mine.yaml"
        text = (Path(__file__).resolve().parent.parent / "rubrics" / "batchnorm.yaml").read_text()
        private.write_text(text.replace("seed: 20241109", "seed: 987654321"))
        zpath = base / "autograder.zip"
        assert main(["gradescope-bundle", "--out", str(zpath), "--rubric", str(private), "--lang", "en"]) == 0
        root = base / "autograder"
        (root / "source").mkdir(parents=True)
        with zipfile.ZipFile(zpath) as zf:
            names = zf.namelist()
            modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
            zf.extractall(root / "source")
        for name in ("setup.sh", "run_autograder"):
            os.chmod(root / "source" / name, 0o755)
        setup = subprocess.run(["bash", str(root / "source" / "setup.sh")], cwd=root / "source", env=_env(root),
                               capture_output=True, text=True, timeout=300)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield root, names, modes
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(root, submission=None, **extra):
    sub = root / "submission"
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir()
    if submission is not None:
        shutil.copyfile(submission, sub / "batchnorm.py")
    env = {**_env(root), **extra}
    done = subprocess.run([str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_bundle_contents(autograder):
    root, names, modes = autograder
    assert {"setup.sh", "run_autograder", "private.yaml"} <= set(names)
    assert any(n.startswith("bn_grader-") and n.endswith(".whl") for n in names)
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    setup = (root / "source" / "setup.sh").read_text()
    assert "bubblewrap" in setup and "download.pytorch.org/whl/cpu" in setup
    assert "example.org" not in setup  # no placeholder address


def test_run_autograder_grades_with_the_private_rubric(autograder):
    root, _, _ = autograder
    data = _run(root, CORPUS / "mistake_reversed_momentum.py")
    ex = data["extra_data"]
    assert 0 < data["score"] < ex["max_score"]
    assert ex["seed"] == 987654321  # the private rubric was used (extra_data: hidden from students)
    student_facing = data["output"] + json.dumps(data["tests"], ensure_ascii=False)
    assert "987654321" not in student_facing and "private.yaml" not in student_facing
    assert str(root) not in student_facing


def test_results_json_even_when_the_rubric_is_broken(autograder):
    root, _, _ = autograder
    private = root / "source" / "private.yaml"
    good = private.read_text()
    try:
        private.write_text(good + "\nbogus_key: 1\n")
        data = _run(root, CORPUS / "correct_textbook.py")
    finally:
        private.write_text(good)
    assert data["score"] == 0 and data["extra_data"]["error"] is True
    assert data["extra_data"]["exit_status"] == 2
    assert "bogus_key" in data["output"]  # the reason, for the instructor
    assert str(root) not in data["output"] and "private.yaml" not in data["output"]


def test_results_json_even_when_the_grader_is_missing(autograder):
    root, _, _ = autograder
    data = _run(root, CORPUS / "correct_textbook.py", BN_GRADE=str(root / "nowhere" / "bn-grade"))
    assert data["score"] == 0 and data["extra_data"]["error"] is True
    assert "could not grade" in data["output"]


def test_empty_submission_is_a_graded_zero(autograder):
    root, _, _ = autograder
    data = _run(root, None)
    assert data["score"] == 0 and data["tests"]  # the normal zero row, every check listed


def test_bundle_usage_errors(tmp_path, capsys):
    assert main(["gradescope-bundle", "--out", str(tmp_path / "a.zip"), "--wheel", str(tmp_path / "x.whl")]) == 2
    assert "x.whl: no such file" in capsys.readouterr().err
    bad = tmp_path / "r.yaml"
    bad.write_text("seed: [\n")
    assert main(["gradescope-bundle", "--out", str(tmp_path / "a.zip"), "--rubric", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "r.yaml: not valid YAML" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.zip").exists()
