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
import re
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
    with open(out / "gradebook.csv", newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def test_a_class_in_every_form(tmp_path, capsys):
    subs = make_class(tmp_path / "subs")
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    code = main([str(subs), "--out", str(out), "--junit", str(junit), "--fail-under", "90%"] + FAST)
    assert code == 1  # some students are below 90%
    rows = {r["id"]: r for r in _gradebook(out)}
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
        assert not (sharded / "gradebook.csv").exists()  # a shard never shows part of the class
    assert main(["--gradebook", str(sharded)]) == 0
    a = _gradebook(one)
    b = _gradebook(sharded)
    # the whole gradebook, row by row and column by column: ids, scores, statuses, flags, checks
    assert [r["id"] for r in a] == sorted(EXPECT) and a == b
    assert {r["id"]: r["status"] for r in a} == {sid: status for sid, (status, _) in EXPECT.items()}
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
    (["SUBS", "--out", "OUT", "--shard", "4/3"], "K must be between 1 and 3"),
    (["SUBS", "--out", "OUT", "--shard-index", "3", "--shard-count", "3"], "--shard 3/3"),
    (["SUBS", "--out", "OUT", "--shard-index", "1"], "needs --shard-count"),
    (["SUBS", "--out", "OUT", "--shard-count", "2"], "goes with --shard-index"),
    (["SUBS", "--out", "OUT", "--finish", "--shard", "1/2"], "without --shard"),
    (["SUBS", "--out", "OUT", "--jobs", "two"], "--jobs"),
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
    rows = {r["id"]: r for r in _gradebook(out)}
    assert "similar:lee" in rows["kim"]["flags"] and "similar:kim" in rows["lee"]["flags"]
    assert "similar" not in rows["max"]["flags"]
    assert rows["kim"]["score"] == rows["kim"]["max_score"] == rows["lee"]["score"]  # a flag, not a penalty
    summary = (out / "summary.html").read_text()
    assert "kim" in summary.split("Similar submissions")[1] and " ~ " in summary


def test_roster_gradebook_for_a_spreadsheet(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copyfile(CORPUS / "correct_textbook.py", subs / "2024001.py")  # named by student id
    shutil.copyfile(CORPUS / "mistake_reversed_momentum.py", subs / "xiaohong.py")  # by the e-mail's user part
    shutil.copyfile(CORPUS / "broken_syntax.py", subs / "stranger.py")  # on no roster
    roster = tmp_path / "roster.csv"
    # as Excel saves "CSV UTF-8": a BOM, CRLF, columns in its own order and one extra
    roster.write_bytes("\ufeffName,ID,Email,Section\r\n王小明,2024001,wxm@example.edu,A\r\n"
                       "李小红,2024002,xiaohong@example.edu,A\r\n张三,2024003,zs@example.edu,B\r\n".encode("utf-8"))
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out), "--roster", str(roster)] + FAST) == 0
    raw = (out / "gradebook.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel on a Chinese Windows reads 王小明, not mojibake
    assert "王小明".encode("utf-8") in raw
    header = raw.decode("utf-8-sig").splitlines()[0].split(",")
    assert header[:8] == ["id", "name", "email", "score", "max_score", "percent", "status", "flags"]
    assert "running_stats" in header[8:]
    rows = _gradebook(out)
    assert [r["id"] for r in rows] == ["2024001", "2024002", "2024003", "stranger"]  # roster order, then the rest
    by = {r["id"]: r for r in rows}
    assert by["2024001"]["name"] == "王小明" and by["2024001"]["score"] == by["2024001"]["max_score"]
    assert by["2024002"]["email"] == "xiaohong@example.edu" and by["2024002"]["running_stats"] == "0"
    assert by["2024003"]["status"] == "missing" and by["2024003"]["score"] == ""
    assert "not_on_roster" in by["stranger"]["flags"]
    # one maximum for everyone graded, stated once in the summary the same way
    assert {r["max_score"] for r in rows if r["score"]} == {by["2024001"]["max_score"]}
    summary = (out / "summary.html").read_text()
    assert "张三" in summary.split('id="missing"')[1]
    assert f"{by['2024001']['max_score']} points for 3 submissions" in summary
    # the rebuild keeps the mapping
    assert main(["--gradebook", str(out), "--roster", str(roster)]) == 0
    assert [r["id"] for r in _gradebook(out)] == ["2024001", "2024002", "2024003", "stranger"]


@pytest.mark.parametrize("text, fragment", [
    ("name,email\nA,a@x\n", "line 1: no 'id' column"),
    ("id,name\n1,A\n1,B\n", "line 3: id '1' already on line 2"),
    ("id,name\n,A\n", "line 2: empty id"),
])
def test_bad_roster_is_one_line_naming_the_file(tmp_path, capsys, text, fragment):
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    (tmp_path / "out").mkdir()
    assert main(["--gradebook", str(tmp_path / "out"), "--roster", str(roster)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(roster) in err and fragment in err


def test_summary_counts_students_not_checks_and_keeps_unloadable_apart(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    # eps outside the sqrt breaks several checks for one student: counted once
    shutil.copyfile(CORPUS / "mistake_eps_outside.py", subs / "a.py")
    shutil.copyfile(CORPUS / "correct_textbook.py", subs / "b.py")
    shutil.copyfile(CORPUS / "broken_syntax.py", subs / "c.py")
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out), "--lang", "zh"] + FAST) == 0
    data = json.loads((out / "a" / "results.json").read_text())
    broken = [c for c in data["extra_data"]["checks"].values() if c["diagnosis"] == "eps_outside_sqrt"]
    assert len(broken) > 1  # the premise: one mistake, several checks
    html_text = (out / "summary.html").read_text()
    diag = html_text.split('class="diagnoses"')[1].split("</table>")[0]
    assert re.search(r"eps_outside_sqrt\)</span></td><td class=\"num\">1</td>", diag), diag
    rates = html_text.split('class="rates"')[1].split("</table>")[0]
    assert "2 / 2" in rates and "/ 3" not in rates  # the unloadable submission is not in the pass rates
    assert "训练模式输出" in rates  # the rubric's titles, in the chosen language
    body = html_text.split("<body>")[1]
    for english in ("Pass rate per check", "Most common", "Flagged submissions", "Students</h2>", ">none<",
                    "could not be graded", ">error<"):
        assert english not in body
    assert "无法评分" in body  # the status, translated
