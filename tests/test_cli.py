"""main(argv) -> int, run in-process (httpie style)."""
import json

import pytest

from conftest import CORPUS, ROOT
from grader.cli import main

GOOD = str(CORPUS / "correct_textbook.py")
WRONG = str(CORPUS / "mistake_reversed_momentum.py")


def test_good_submission_exit_0_and_gradescope_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main([GOOD, "--no-train", "--json", str(out), "--no-color"]) == 0
    text = capsys.readouterr().out
    assert "PASS  forward.train.4d" in text and "Total: 100 / 100" in text
    data = json.loads(out.read_text())
    assert set(data) >= {"score", "execution_time", "output", "tests", "extra_data"}
    assert data["score"] == 100
    names = [t["name"] for t in data["tests"]]
    # not run on a CPU machine, or under --no-train: not in tests, not in the maximum
    assert not any(n.startswith(("device.cuda", "training.")) for n in names)
    for t in data["tests"]:
        assert set(t) >= {"name", "number", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed")
    assert sum(t["max_score"] for t in data["tests"]) == data["extra_data"]["max_score"] == 100
    ex = data["extra_data"]
    for key in ("seed", "torch_version", "device", "rubric_hash", "submission_hash"):
        assert ex[key] not in (None, "")
    assert {n["check"] for n in ex["not_run"]} == {"device.cuda", "training.trains", "training.accuracy",
                                                   "training.beats_no_bn"}


def test_wrong_submission_names_the_mistake_and_fail_under(tmp_path, capsys):
    out = tmp_path / "o"
    assert main([WRONG, "--no-train", "--out", str(out), "--fail-under", "100%", "--no-color"]) == 1
    text = capsys.readouterr().out
    assert "FAIL  running_stats" in text and "momentum convention reversed" in text
    data = json.loads((out / "results.json").read_text())
    failed = {t["name"].split(":")[0] for t in data["tests"] if t["status"] == "failed"}
    assert failed == {"running_stats", "hyperparams.momentum", "integration.lenet"}
    assert main([WRONG, "--no-train", "--fail-under", "70"]) == 0  # 75 points: above 70
    assert main([WRONG, "--no-train", "--fail-under", "76"]) == 1


def test_broken_submission_is_a_graded_zero_not_a_traceback(capsys):
    code = main([str(CORPUS / "broken_syntax.py"), "--no-train", "--no-color"])
    captured = capsys.readouterr()
    assert code == 0
    assert "Traceback" not in captured.err
    assert "SyntaxError" in captured.out and "Total: 0 / 100" in captured.out


@pytest.mark.parametrize("argv, fragment", [
    (["/nonexistent/sub.py"], "/nonexistent/sub.py: no such file"),
    ([str(ROOT / "tests")], "is a folder: grading a class needs --out"),
    ([str(ROOT / "pyproject.toml")], "not a .py, .zip or .ipynb file"),
    ([GOOD, "--fail-under", "lots"], "--fail-under: 'lots' is not a number"),
    ([GOOD, "--bogus"], "unrecognized arguments: --bogus"),
    ([], "the following arguments are required: submission"),
    ([GOOD, "--json", str(ROOT / "tests")], "is a folder"),
])
def test_usage_errors_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err


def test_hidden_checks_show_only_pass_fail(tmp_path, rubric):
    import yaml
    data = yaml.safe_load(open(rubric.path))
    for c in data["checks"]:
        if c["id"] == "running_stats":
            c["visibility"] = "hidden"
    p = tmp_path / "private.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    out = tmp_path / "r.json"
    assert main([WRONG, "--no-train", "--rubric", str(p), "--json", str(out)]) == 0
    tests = {t["name"].split(":")[0]: t for t in json.loads(out.read_text())["tests"]}
    assert tests["running_stats"]["output"] == "failed"
    assert "momentum convention reversed" in tests["hyperparams.momentum"]["output"]
    assert "reversed" in json.loads(out.read_text())["extra_data"]["hidden_details"]["running_stats"]


def test_student_prints_are_kept_apart_from_results(tmp_path, capsys):
    from conftest import TEMPLATE_OK, write
    sub = write(tmp_path, "noisy.py", TEMPLATE_OK.replace("{extra}", 'print("score: 100/100")'))
    out = tmp_path / "r.json"
    assert main([str(sub), "--no-train", "--json", str(out), "--no-color"]) == 0
    data = json.loads(out.read_text())
    assert "score: 100/100" in data["extra_data"]["student_output"]
    assert all("score: 100/100" not in t["output"] for t in data["tests"])
    assert data["score"] == 100


def test_chinese_terminal_keeps_the_original_error_verbatim(capsys):
    assert main([str(CORPUS / "broken_syntax.py"), "--no-train", "--no-color", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("BatchNorm 评分器 — broken_syntax.py")
    assert "无法加载或运行你的代码" in out and "SyntaxError: expected ':'" in out  # the reason, then the original
    assert "总分: 0 / 100" in out and "Total:" not in out and "PASS" not in out and "FAIL" not in out
    assert main([WRONG, "--no-train", "--no-color", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    assert "失败  running_stats" in out and "通过  structure.4d" in out
    assert "修改提示: " in out and "可能的错误: " in out
    # a note is labelled as a note, never as a mistake or a hint
    notes = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("备注")]
    assert notes and not any("可能的错误" in ln or "修改提示" in ln for ln in notes)
