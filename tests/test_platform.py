"""What a student's Windows or macOS laptop brings, simulated on Linux: a cp936 console, a
folder named in Chinese with a space, CRLF and BOM files, a Jupyter notebook saved on Windows,
the platform's cache folder, Apple's GPU and the laptop's cores for training."""
import io
import json
import sys
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT

from grader.output import terminal


def _cp936():
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="cp936", newline="\n")


def test_a_cp936_stream_raises_unless_prepared():
    raw, stream = _cp936()
    with pytest.raises(UnicodeEncodeError):
        stream.write("通过 ✓\n")
        stream.flush()
    raw, stream = _cp936()
    terminal.prepare_stream(stream)
    stream.write("通过 ✓ |Δ| ≤ 1e-5 · γ\n")
    stream.flush()
    # Chinese stays Chinese; symbols cp936 lacks get readable stand-ins (which ones it has varies)
    text = raw.getvalue().decode("cp936")
    assert text.startswith("通过 v |") and text.endswith("1e-5 \u00b7 γ\n".encode("cp936", "bn_grade_readable")
                                                      .decode("cp936"))
    assert "?" not in text


def test_utf8_streams_are_left_alone():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    terminal.prepare_stream(stream)
    assert stream.errors == "strict"


@pytest.fixture(scope="module")
def chinese_crlf_file(tmp_path_factory):
    # C:\Users\王小明\作业\batchnorm.py, saved by Notepad: a BOM and CRLF line endings
    folder = tmp_path_factory.mktemp("home") / "王小明 作业"
    folder.mkdir()
    p = folder / "批归一化 batchnorm.py"
    text = (CORPUS / "mistake_reversed_momentum.py").read_text(encoding="utf-8")
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    return p


def test_chinese_path_crlf_and_bom_grade_as_the_plain_file(chinese_crlf_file, spawner, quick_rubric):
    from grader.grading import grade_file
    from test_corpus import verdicts
    plain = grade_file(CORPUS / "mistake_reversed_momentum.py", quick_rubric, spawner)
    windows = grade_file(chinese_crlf_file, quick_rubric, spawner)
    assert windows.status.value == "graded", windows.reason
    assert verdicts(windows) == verdicts(plain)
    assert windows.score == plain.score < windows.max_score
    assert [s.outcome.message for s in windows.checks] == [s.outcome.message for s in plain.checks]


def test_cli_through_a_cp936_console_is_readable(chinese_crlf_file, monkeypatch, tmp_path):
    from grader import cli
    raw, stream = _cp936()
    monkeypatch.setattr(sys, "stdout", stream)
    status = cli.main([str(chinese_crlf_file), "--no-train", "--lang", "zh", "--no-color",
                       "--json", str(tmp_path / "r.json")])
    stream.flush()
    text = raw.getvalue().decode("cp936")
    assert status == 0
    assert "批归一化 batchnorm.py" in text  # the file's own name, in Chinese
    assert "动量" in text  # the momentum mistake's hint, in Chinese
    assert "\x1b[" not in text
    score = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["score"]
    assert f"{score:g} /" in text


def test_colour_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert terminal.supports_colour(Tty()) is True
    assert terminal.supports_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert terminal.supports_colour(Tty()) is False


def test_windows_notebook_with_crlf_and_bom(tmp_path):
    from grader import intake
    src = (ROOT / "reference" / "batchnorm.py").read_text(encoding="utf-8")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 作业\r\n"]},
                    {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [],
                     "source": [line + "\r\n" for line in src.split("\n")]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}}, "nbformat": 4,
          "nbformat_minor": 5}
    p = tmp_path / "王小明 作业.ipynb"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(nb, ensure_ascii=False, indent=1).replace("\n", "\r\n").encode())
    got = intake.prepare("王小明", p, tmp_path / "staging")
    assert got.error == "" and got.line_map is not None
    code = got.source.read_text(encoding="utf-8")
    compile(code, "nb.py", "exec")
    assert "class BatchNorm2d" in code and "作业" not in code  # the code cell alone, not the markdown


@pytest.mark.parametrize("platform, env, want", [
    ("win32", {"LOCALAPPDATA": r"C:\Users\王小明\AppData\Local"}, ("AppData", "Local", "bn-grader", "Cache")),
    ("darwin", {"HOME": "/Users/wang"}, ("Users", "wang", "Library", "Caches", "bn-grader")),
    ("linux", {"HOME": "/home/wang"}, ("home", "wang", ".cache", "bn-grader")),
    ("linux", {"HOME": "/home/wang", "XDG_CACHE_HOME": "/scratch/c"}, ("scratch", "c", "bn-grader")),
    ("win32", {"BN_GRADE_CACHE": "D:/cache", "LOCALAPPDATA": "C:/x"}, ("D:", "cache")),
])
def test_cache_in_the_platforms_folder(platform, env, want):
    from grader.training import data
    got = str(data.default_cache_dir(platform, env)).replace("\\", "/")
    assert got.split("/")[-len(want):] == list(want), got


def test_auto_device_picks_apples_gpu(monkeypatch):
    import torch
    from grader.training import stage
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(stage, "_mps", lambda: True)
    assert stage.resolve_device("auto") == "mps"
    assert stage.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(stage, "_mps", lambda: False)
    assert stage.resolve_device("auto") == "cpu"


def test_threads_sized_to_the_laptop(monkeypatch):
    import subprocess
    from grader.training import stage

    class Done:
        stdout = "6\n"
    seen = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: seen.append(argv) or Done())
    assert stage.cores("darwin") == 6 and seen[0][-1] == "hw.perflevel0.physicalcpu"
    import os
    assert 1 <= stage.cores("win32") <= (os.cpu_count() or 1)


def test_quick_and_epochs(rubric):
    from grader.training.stage import adjusted
    t = rubric.training
    q = adjusted(t, quick=True)
    assert (q.epochs, q.max_train_images) == (1, 10_000) and q.lr == t.lr and q.seed == t.seed
    assert adjusted(t, epochs=2).epochs == 2 and adjusted(t) == t
    assert adjusted(t, epochs=3, quick=True).epochs == 3


def test_quick_is_refused_for_gradescope(capsys):
    from grader import cli
    assert cli.main(["--gradescope", "--quick"]) == 2
    assert "--quick" in capsys.readouterr().err


def test_the_stage_says_how_long_it_will_take(tmp_path):
    from test_training import _stage, make_folder
    from grader.training import stage as stage_mod
    root = make_folder(tmp_path / "d")
    _, st = _stage(tmp_path, root)
    e = st.estimate()
    assert e["runs"] == 3 and e["steps"] == -(-len(st.train_idx) // st.cfg.batch_size)
    one_run = e["epochs"] * e["steps"] * e["step_seconds"]
    assert 0 < e["step_seconds"] < 10 and e["side_by_side"] == (st.threads >= 2)
    # the student's run, then the baselines: side by side about one more run, else two more
    assert e["seconds"] > (1 if e["side_by_side"] else 3) * one_run
    threads, st.threads = st.threads, 1  # one core: three runs one after the other
    e1 = st.estimate()
    assert not e1["side_by_side"] and e1["seconds"] >= 3 * e1["epochs"] * e1["steps"] * e1["step_seconds"]
    st.threads = threads
    out = io.StringIO()
    from grader.output.progress import Progress
    st.progress = Progress(stream=out, enabled=True)
    st.shortened = True
    st.announce()
    line = out.getvalue()
    assert line.startswith("training stage: 3 run(s) x 2 epoch(s)") and "about" in line and "--quick" in line
    assert stage_mod._clock(75) == "1 min 15 s"
