"""The grader's imports run one way, and the parts that only read results stay light.

The design (README "How it works", grader/__init__.py):
  - data flows submission -> sandbox -> checks -> scoring -> output, and the entry points sit on
    top: a module imports only from its own layer or below (LAYERS), at module level or inside a
    function, and the module-level imports have no cycle;
  - grader/sandbox/inside/ runs in the sandbox: it imports nothing else of the grader (but the
    LeNet-5 harness, which is mounted beside it there), and the rest of the grader takes only
    the message format (wire.py) from it;
  - scoring, the renderers, the gradebook and what they read import no torch, so rebuilding a
    gradebook or writing results.json never pays torch's seconds.
Nothing here runs student code or a sandbox: the source is parsed, and one fresh interpreter
imports the light modules.
"""
import ast
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT

GRADER = ROOT / "grader"

# lowest first; a module may import from its own layer and the ones before it, never after
LAYERS = [
    # leaves: data types, words, file writing, parsing, the LeNet-5 harness (torch only: it is
    # mounted in the sandbox too); they import nothing heavier
    ("leaves", ("=grader", "grader.results", "grader.errors", "grader.cpus", "grader.shards", "grader.rubric", "grader.intake", "grader.slicing",
                "grader.similarity", "grader.output.i18n", "grader.output.files", "grader.output.charts",
                "grader.output.html", "grader.training.lenet")),
    ("sandbox", ("grader.sandbox",)),
    ("checks and training", ("grader.checks", "grader.training")),
    ("scoring and output", ("grader.scoring", "grader.output", "grader.pack")),
    ("grading", ("grader.grading",)),
    ("entries", ("grader.batch", "grader.gradebook", "grader.notebook", "grader.gradescope_bundle",
                 "grader.packmaker")),
    ("command line", ("grader.cli", "grader.__main__")),
]
# imports against the direction, each with its reason; keep this short
UPWARD = set()
# inside/ may import this much of the grader: the LeNet-5 harness, when unconfined (inside the
# sandbox it is mounted as bn_lenet); it imports nothing of the grader itself
INSIDE_MAY_IMPORT = {"grader.training.lenet"}
# outside sandbox/, only the message format is taken from inside/; packmaker.py calls the
# handlers directly, on the reference class, to record a check pack's answers
FROM_INSIDE = {"grader.sandbox.inside.wire"}
CALLS_HANDLERS = {"grader.packmaker"}
# no torch, even once called: what scoring, writing results and rebuilding a gradebook need
LIGHT = ["grader.results", "grader.errors", "grader.rubric", "grader.intake", "grader.slicing", "grader.similarity",
         "grader.scoring", "grader.gradebook", "grader.checks.registry", "grader.checks.static",
         "grader.checks.mistakes", "grader.output", "grader.output.i18n", "grader.output.files",
         "grader.output.charts", "grader.output.html", "grader.output.text", "grader.output.terminal",
         "grader.output.gradescope", "grader.output.report", "grader.output.junit", "grader.output.github",
         "grader.output.progress", "grader.shards", "grader.cpus", "grader.cli"]
# light modules that import a heavy one on purpose, inside a function: (importer, imported)
LIGHT_LAZY = {
    # off Linux the CPU count is torch's (no affinity to read); the OpenMP policy is decided
    # before torch loads, so cpus.py itself must stay light
    ("grader.cpus", "torch"),
    # the formulas' old names, for the tests and the full edition (mistakes.__getattr__)
    ("grader.checks.mistakes", "grader.checks.variants"),
    # cli.py imports the grading machinery once the arguments are known to be usable
    *(("grader.cli", m) for m in ("grader.batch", "grader.grading", "grader.sandbox.zygote", "grader.sandbox.engine",
                                  "grader.training.data", "grader.training.stage", "grader.training.packed",
                                  "grader.checks.oracle", "grader.pack", "grader.packmaker",
                                  "grader.gradescope_bundle")),
}


def _name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_name(p): p for p in sorted(GRADER.rglob("*.py"))}


def _imports(name, path):
    """[(imported module, at module level?)] of the grader and torch: `from grader.x import y` is
    grader.x.y when that is a module, else grader.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for n in tree.body:  # `try: import bn_lenet except ImportError: from grader...` is module level too
        if isinstance(n, (ast.Try, ast.If)):
            top |= {id(c) for c in ast.walk(n) if isinstance(c, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in ("grader", "torch", "torchvision"):
                out.append((t, id(node) in top))
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name):
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if p.startswith("="):  # the package alone (grader/__init__.py: its version)
                if name == p[1:]:
                    return i
            elif name == p or name.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def test_every_module_has_a_layer():
    assert [m for m in MODULES if _layer(m) is None] == [], "place the new module in LAYERS"


def test_imports_never_run_back_up():
    wrong = []
    for name, imports in GRAPH.items():
        for target, _ in imports:
            if target.startswith("grader") and _layer(target) > _layer(name) and (name, target) not in UPWARD \
                    and (name, target) not in LIGHT_LAZY:
                wrong.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert wrong == []


def test_module_level_imports_have_no_cycle():
    edges = {n: {t for t, top in imports if top and t in MODULES and t != n} for n, imports in GRAPH.items()}
    done, path = set(), []

    def visit(n):
        if n in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
        if n in done:
            return
        path.append(n)
        for m in sorted(edges[n]):
            visit(m)
        path.pop()
        done.add(n)

    for n in sorted(edges):
        visit(n)


def test_the_sandbox_side_imports_nothing_of_the_grader():
    inside = [n for n in MODULES if n.startswith("grader.sandbox.inside")]
    assert "grader.sandbox.inside.worker" in inside
    wrong = [(n, t) for n in inside for t, _ in GRAPH[n]
             if t.startswith("grader") and not t.startswith("grader.sandbox.inside") and t not in INSIDE_MAY_IMPORT]
    assert wrong == []
    for harness in INSIDE_MAY_IMPORT:
        assert [t for t, _ in GRAPH[harness] if t.startswith("grader")] == [], f"{harness} must stay self-contained"


def test_only_the_message_format_crosses_the_boundary():
    wrong = [(n, t) for n, imports in GRAPH.items() if not n.startswith("grader.sandbox") for t, _ in imports
             if t.startswith("grader.sandbox.inside") and t not in FROM_INSIDE and n not in CALLS_HANDLERS]
    assert wrong == []


def test_light_modules_import_only_light_modules_and_no_torch():
    light = set(LIGHT)
    wrong = [(n, t) for n in LIGHT for t, _ in GRAPH[n]
             if (t.split(".")[0] in ("torch", "torchvision") or (t not in light and t != "grader"))
             and (n, t) not in LIGHT_LAZY]
    assert wrong == []


def test_the_rules_catch_a_violation(monkeypatch):
    # the checks above can fail: scoring importing grading (which imports scoring), the worker's
    # handlers and torch, and the worker importing the result types
    monkeypatch.setitem(GRAPH, "grader.scoring", GRAPH["grader.scoring"] + [
        ("grader.grading", True), ("grader.sandbox.inside.handlers", True), ("torch", True)])
    monkeypatch.setitem(GRAPH, "grader.sandbox.inside.worker", GRAPH["grader.sandbox.inside.worker"] + [
        ("grader.results", False)])
    for test in (test_imports_never_run_back_up, test_module_level_imports_have_no_cycle,
                 test_the_sandbox_side_imports_nothing_of_the_grader,
                 test_only_the_message_format_crosses_the_boundary,
                 test_light_modules_import_only_light_modules_and_no_torch):
        with pytest.raises(AssertionError):
            test()


_PROBE = r"""
import importlib, json, sys, tempfile
from pathlib import Path
first = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    if "torch" in sys.modules and not first:
        first["import"] = name
# and once used: render a result, write results.json, rebuild a gradebook from it
from grader import scoring, gradebook, rubric
from grader.output import gradescope, junit, report, terminal
from grader.output.i18n import SKIPPED
from grader.results import CheckOutcome, GradeResult, RunFacts, RunStatus
r = rubric.load(None)
outcomes = [CheckOutcome(c.id, None, skipped=SKIPPED["no_cuda"]["en"]) if c.id == "device.cuda" else
            CheckOutcome(c.id, None, skipped=SKIPPED["no_train"]["en"]) if c.id.startswith("training.") else
            CheckOutcome(c.id, c.id != "forward.train.4d", "x") for c in r.checks]
scored, not_run, total, mx = scoring.score(outcomes, r)
res = GradeResult("alice.py", "0" * 64, RunStatus.GRADED, "", scored, total, mx,
                  RunFacts(r.seed, "-", "cpu", r.path, r.sha256, "-", "-"), 1.0, not_run=not_run,
                  maximum=scoring.maximum(r, not_run), student="alice")
out = Path(tempfile.mkdtemp())
for lang in ("en", "zh"):
    terminal.render(res, lang, colour=False)
    report.render(res, lang)
gradescope.write_json(res, out / "alice" / "results.json", "zh")
junit.write([res], out / "junit.xml")
rows, _ = gradebook.rebuild(out, lang="zh")
if "torch" in sys.modules and not first:
    first["use"] = "rendering, writing results.json or rebuilding the gradebook"
print(json.dumps({"first": first, "rows": len(rows), "score": total, "max": mx}))
"""


def test_scoring_outputs_and_gradebook_run_without_torch():
    r = subprocess.run([sys.executable, "-c", _PROBE, *LIGHT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["first"] == {}, f"torch was imported by {got['first']}"
    assert got["rows"] == 1 and got["max"] == 100 and got["score"] < got["max"]


def _layout_block():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## How it works", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def _layout_entries():
    """{path: its description}, from README "How it works"'s layout block."""
    entries, current = {}, None
    for line in _layout_block().splitlines():
        m = re.match(r"(\S+)\s+(.*)", line)
        if m and not line.startswith(" "):
            current = m.group(1)
            entries[current] = m.group(2)
        elif current:
            entries[current] += " " + line.strip()
    return entries


def test_every_file_the_readme_layout_names_exists():
    entries = _layout_entries()
    assert "grader/grading.py" in entries and "grader/sandbox/" in entries
    missing = []
    for path, text in entries.items():
        if not (ROOT / path).exists():
            missing.append(path)
            continue
        folder = ROOT / path if path.endswith("/") else (ROOT / path).parent
        # the files and folders its description names, somewhere under that folder
        for named in re.findall(r"(?<![\w/.])([a-z_0-9]+(?:\.py|/))(?=[\s,;:).]|$)", text):
            if named.endswith(".py") and not list(folder.rglob(named)) and not (ROOT / named).exists():
                missing.append(f"{named} (under {path})")
            elif named.endswith("/") and not list(folder.rglob(named.rstrip("/"))) and not (ROOT / named).exists():
                missing.append(f"{named} (under {path})")
        # and the paths it gives from the top (docs/student-edition.md)
        missing += [f"{p} (under {path})" for p in re.findall(r"(?<![\w/.-])((?:[\w-]+/)+[\w.-]+\.\w+)", text)
                    if not (ROOT / p).exists()]
    assert missing == []


def test_every_grader_module_is_in_the_readme_layout():
    entries = _layout_entries()
    unnamed = []
    for name, path in MODULES.items():
        if path.name in ("__init__.py",):
            continue
        rel = path.relative_to(ROOT).as_posix()
        if rel in entries:
            continue
        # named in the entry of its folder (or a folder above it), by file name or by stem
        folders = [p for p in entries if p.endswith("/") and rel.startswith(p)]
        words = " ".join(entries[f] for f in folders) + " " + " ".join(
            t for p, t in entries.items() if p.startswith("grader/") and not p.endswith("/")
            and (ROOT / p).parent == path.parent)
        if not re.search(rf"(?<![\w]){re.escape(path.stem)}(?![\w])", words, re.I):
            unnamed.append(rel)
    assert unnamed == [], "name them in README 'How it works'"


@pytest.mark.parametrize("extra", [[], ["--shard", "1/2"], ["--shard-from-env", "--shard-count", "2"]])
def test_the_sandbox_starts_before_the_grader_imports_torch(tmp_path, extra):
    # the zygote imports torch while the grader does: a flag check that pulls torch in first
    # makes every submission wait for two imports one after the other (about 3 s here)
    code = ("import sys\n"
            "from grader.sandbox import zygote\n"
            "def shared(mode):\n"
            "    print('torch imported' if 'torch' in sys.modules else 'torch not yet', flush=True)\n"
            "    raise SystemExit(0)\n"
            "zygote.shared = shared\n"
            "from grader.cli import main\n"
            "main(sys.argv[1:])\n")
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "a.py").write_text("class BatchNorm2d: pass\n")
    args = [str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--no-train"] + extra
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0",
                            "SLURM_ARRAY_TASK_MAX": "1", "SLURM_ARRAY_TASK_COUNT": "2"}, timeout=60)
    assert r.stdout.strip() == "torch not yet", r.stdout + r.stderr
