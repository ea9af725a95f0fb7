"""Batch grading: a class in all four entry forms, shards + rebuild equal to one run, resume
after a kill, JUnit and Gradescope outputs."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import CORPUS, ROOT
from grader.cli import main

FAST = ["--no-train", "--quiet", "--jobs", "2"]


def _notebook(path, cells):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": ["stale output\n"]}],
                     "source": c} for c in cells]}
    path.write_text(json.dumps(nb))


def make_class(root):
    """A class mixing correct, wrong and broken submissions in every entry form."""
    root.mkdir()
    shutil.copyfile(CORPUS / "correct_textbook.py", root / "alice.py")
    shutil.copyfile(CORPUS / "mistake_reversed_momentum.py", root / "bob.py")
    shutil.copyfile(CORPUS / "broken_syntax.py", root / "carol.py")
    (root / "dave").mkdir()
    shutil.copyfile(CORPUS / "correct_var_mean.py", root / "dave" / "my_bn.py")
    (root / "dave" / "notes.py").write_text("print('not the homework')\n")
    (root / "erin").mkdir()
    (root / "erin" / "readme.txt").write_text("forgot the code")
    with zipfile.ZipFile(root / "frank.zip", "w") as z:
        z.write(CORPUS / "mistake_eps_outside.py", "hw9/batchnorm.py")
    with zipfile.ZipFile(root / "gina.zip", "w") as z:
        z.writestr("../../escape.py", "print('x')")
    _notebook(root / "hank.ipynb", [
        "import torch\nfrom torch import nn\n",
        (CORPUS / "correct_register_buffer.py").read_text(),
        "!pip install matplotlib\n%matplotlib inline\nnet = train(LeNet(), load_cifar())\nraise SystemExit(1)\n",
    ])
    (root / "ivan.ipynb").write_text("{not json")
    shutil.copyfile(CORPUS / "mistake_batch_stats_in_eval.py", root / "judy.py")
    return root


EXPECT = {  # student -> (status, full marks?)
    "alice": ("graded", True), "bob": ("graded", False), "carol": ("error", False), "dave": ("graded", True),
    "erin": ("error", False), "frank": ("graded", False), "gina": ("error", False), "hank": ("graded", True),
    "ivan": ("error", False), "judy": ("graded", False),
}


def _gradebook(out):
    with open(out / "gradebook.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_class_in_every_form(tmp_path, capsys):
    subs = make_class(tmp_path / "subs")
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    code = main([str(subs), "--out", str(out), "--junit", str(junit), "--fail-under", "90%"] + FAST)
    assert code == 1  # some students are below 90%
    rows = {r["student"]: r for r in _gradebook(out)}
    assert set(rows) == set(EXPECT)  # nobody lost
    for sid, (status, full) in EXPECT.items():
        r = rows[sid]
        assert r["status"] == status, (sid, r)
        assert (r["score"] == r["max_score"]) == full, (sid, r)
        assert (out / sid / "report.html").exists() and (out / sid / "results.json").exists()
    assert rows["bob"]["running_stats"] == "0" and rows["alice"]["running_stats"] == "15"
    assert float(rows["carol"]["score"]) == 0 and rows["carol"]["max_score"] == rows["alice"]["max_score"]
    assert rows["carol"]["flags"] == ""  # not run is not caught: no builtin_norm flag on a syntax error
    # from a folder, the file that defines BatchNorm2d is the one graded
    assert (out / "dave" / "submission.py").read_text() == (subs / "dave" / "my_bn.py").read_text()
    gina = json.loads((out / "gina" / "results.json").read_text())
    assert ".." in gina["extra_data"]["reason"] or "path" in gina["extra_data"]["reason"]
    assert not (tmp_path / "escape.py").exists() and not (subs.parent / "escape.py").exists()
    summary = (out / "summary.html").read_text()
    for sid in EXPECT:
        assert f'href="{sid}/report.html"' in summary
    assert "momentum convention reversed" in summary  # the common diagnoses
    assert "<testsuite" in junit.read_text() and 'name="running_stats"' in junit.read_text()


def test_shards_plus_rebuild_equal_one_run(tmp_path):
    subs = make_class(tmp_path / "subs")
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    assert main([str(subs), "--out", str(one)] + FAST) == 0
    for k in (1, 2, 3):
        assert main([str(subs), "--out", str(sharded), "--shard", f"{k}/3"] + FAST) == 0
    assert main(["--gradebook", str(sharded)]) == 0
    a = _gradebook(one)
    b = _gradebook(sharded)
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    # each shard graded a disjoint share: every student graded exactly once
    assert sorted(p.name for p in sharded.iterdir() if p.is_dir()) == sorted(EXPECT)


def test_rerun_skips_done_students_and_regrade_redoes_them(tmp_path):
    subs = make_class(tmp_path / "subs")
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out)] + FAST) == 0
    stamp = {s: (out / s / "results.json").stat().st_mtime_ns for s in EXPECT}
    assert main([str(subs), "--out", str(out)] + FAST) == 0
    assert {s: (out / s / "results.json").stat().st_mtime_ns for s in EXPECT} == stamp
    assert main([str(subs), "--out", str(out), "--regrade"] + FAST) == 0
    assert all((out / s / "results.json").stat().st_mtime_ns != stamp[s] for s in EXPECT)


def test_resume_after_a_kill_loses_nobody_and_grades_nobody_twice(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(12):
        shutil.copyfile(CORPUS / ("correct_manual_sums.py" if i % 2 else "mistake_unbiased_var.py"),
                        subs / f"s{i:02d}.py")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "grade.py"), str(subs), "--out", str(out), "--no-train", "--jobs", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*/results.json"))) < 3:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    first = {f.parent.name: f.stat().st_mtime_ns for f in out.glob("*/results.json")}
    assert 3 <= len(first) < 12
    for f in out.glob("*/results.json"):
        json.loads(f.read_text())  # every file present is complete
    assert main([str(subs), "--out", str(out)] + FAST) == 0
    after = {f.parent.name: f.stat().st_mtime_ns for f in out.glob("*/results.json")}
    assert len(after) == 12
    assert all(after[s] == t for s, t in first.items())  # nobody graded twice
    assert len(_gradebook(out)) == 12


def test_gradescope_mode(tmp_path, monkeypatch):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    shutil.copyfile(CORPUS / "correct_rsqrt.py", root / "submission" / "batchnorm.py")
    (root / "submission" / "scratch.py").write_text("x = 1\n")
    monkeypatch.setenv("BN_GRADESCOPE_ROOT", str(root))
    assert main(["--gradescope", "--no-train", "--quiet"]) == 0
    data = json.loads((root / "results" / "results.json").read_text())
    assert data["score"] == data["extra_data"]["max_score"] > 0
    assert {"score", "execution_time", "output", "tests"} <= set(data)


@pytest.mark.parametrize("argv, fragment", [
    (["SUBS"], "needs --out"),
    (["SUBS", "--out", "OUT", "--shard", "4/3"], "K must be between 1 and N"),
    (["SUBS", "--out", "OUT", "--shard", "x"], "expected K/N"),
    (["SUBS", "--out", "OUT", "--json", "r.json"], "--json/--report are for one submission"),
    ([str(CORPUS / "correct_rsqrt.py"), "--jobs", "2"], "are for a folder of submissions"),
    (["--gradebook", "/nonexistent/out"], "no such folder"),
])
def test_batch_usage_errors(tmp_path, argv, fragment, capsys):
    subs = make_class(tmp_path / "subs")
    argv = [a.replace("SUBS", str(subs)).replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err


def test_near_identical_submissions_are_flagged_not_penalised(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    original = (CORPUS / "correct_manual_sums.py").read_text()
    shutil.copyfile(CORPUS / "correct_manual_sums.py", subs / "kim.py")
    # the same code with names changed, comments stripped and blank lines moved
    import re
    disguised = re.sub(r"#.*", "", original)
    for a, b in (("X_hat", "xn"), ("X", "inp"), ("n", "count")):  # local names only, whole words
        disguised = re.sub(rf"(?<![.\w]){a}\b", b, disguised)
    disguised = re.sub(r"\bmean\b(?!\()", "mu", disguised).replace("\n\n", "\n")
    (subs / "lee.py").write_text(disguised)
    shutil.copyfile(CORPUS / "correct_var_mean.py", subs / "max.py")
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out)] + FAST) == 0
    rows = {r["student"]: r for r in _gradebook(out)}
    assert "similar:lee" in rows["kim"]["flags"] and "similar:kim" in rows["lee"]["flags"]
    assert "similar" not in rows["max"]["flags"]
    assert rows["kim"]["score"] == rows["kim"]["max_score"] == rows["lee"]["score"]  # a flag, not a penalty
    summary = (out / "summary.html").read_text()
    assert "kim" in summary.split("Similar submissions")[1] and " ~ " in summary
