"""The student edition as a student gets it: the wheel student_edition/build.py makes, installed
NON-editable into a fresh venv, grades the template and a buggy layer against the template's pack
with the full edition's diagnoses, and nothing it installs is a working BatchNorm.

The venv sees the machine's torch through a .pth file rather than --system-site-packages: that
flag would also run the checkout's editable-install hook, which resolves `reference.batchnorm`
from the checkout, and the venv would no longer be what a student has. pip installs with
--no-index: nothing is downloaded.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tokenize
import zipfile
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT, ZYGOTE

sys.path.insert(0, str(ROOT / "student_edition"))
import build as student_build  # noqa: E402

PACK = ROOT / "student_template" / "batchnorm.bnpack"
# identifiers of the code that computes BatchNorm in the full edition: the reference's helpers and
# the variants' formulas. Searched as code tokens (not in strings or comments: the hints may name
# var_mean or dim=(0, 2, 3) in words)
FORBIDDEN_NAMES = {"batch_stats", "reduce_dims", "running_update", "running_start", "train_forward", "eval_forward",
                   "_normalize", "_stats", "unbiased_running_var", "var_mean"}


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def venv():
    # not under /tmp: the sandbox mounts a private /tmp over it (see tests/test_packaging.py)
    d = Path(tempfile.mkdtemp(prefix="bn-student-", dir=os.environ.get("BN_TEST_VENV_ROOT", "/var/tmp")))
    try:
        wheel = student_build.build(d / "dist")
        v = d / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(v)], check=True, timeout=120)
        site = Path(subprocess.run([str(v / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                    "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
        # the machine's packages (torch, yaml, jinja2, pip) as plain path entries: no .pth of theirs runs
        dirs = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
        (site / "machine_packages.pth").write_text("\n".join(dirs) + "\n")
        subprocess.run([str(v / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                       env=_env(), capture_output=True, timeout=300)
        yield wheel, v, site
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _ours(site):
    # what the student edition installed, by its RECORD
    (info,) = site.glob("bn_grader_student-*.dist-info")
    rows = (info / "RECORD").read_text().splitlines()
    return [site / r.split(",")[0] for r in rows if r and not r.startswith(("..", "/"))]


def test_wheel_withholds_the_reference_and_the_variants(venv):
    wheel, _, _ = venv
    names = set(zipfile.ZipFile(wheel).namelist())
    for withheld in student_build.WITHHELD:
        assert withheld not in names
    assert not any(n.startswith(("tests/", "student_template/", "reference/")) for n in names)
    for needed in ("grader/cli.py", "grader/pack.py", "grader/checks/oracle.py", "grader/checks/search.py",
                   "grader/sandbox/inside/handlers.py", "grader/output/templates/report.html.j2", "grader/training/lenet.py",
                   "rubrics/batchnorm.yaml", "grader/training/packed.py"):
        assert needed in names, needed


def test_nothing_installed_is_a_working_batchnorm(venv, tmp_path):
    _, v, site = venv
    files = _ours(site)
    py = [f for f in files if f.suffix == ".py"]
    assert len(py) > 40
    # 1. the reference's and the variants' code is nowhere: their distinctive lines, and the
    #    identifiers of their functions as code
    distinctive = set()
    for src in ("reference/batchnorm.py", "grader/checks/variants.py"):
        for line in (ROOT / src).read_text().splitlines():
            s = line.strip()
            if len(s) > 30 and not s.startswith(("#", '"', "from ", "import ", "def __init__", "super()")):
                distinctive.add(s)
    for f in py:
        text = f.read_text(encoding="utf-8")
        hits = [s for s in distinctive if s in text]
        assert not hits, (f, hits[:3])
        with open(f, "rb") as fh:
            names = {t.string for t in tokenize.tokenize(fh.readline) if t.type == tokenize.NAME}
        assert not names & FORBIDDEN_NAMES, (f, names & FORBIDDEN_NAMES)
    # 2. and nothing importable computes it: every nn.Module the installed modules define, built
    #    as BatchNorm2d(C, 4) and run in training mode, differs from the course's BatchNorm
    probe = tmp_path / "probe.py"
    probe.write_text('''
import importlib, inspect, json, sys, torch
from torch import nn
found = []
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
    except Exception as e:
        found.append([name, "import failed: " + type(e).__name__])
        continue
    for cname, cls in vars(mod).items():
        if inspect.isclass(cls) and issubclass(cls, nn.Module) and cls.__module__ == mod.__name__:
            x = torch.randn(4, 3, 5, 6, generator=torch.Generator().manual_seed(0))
            try:
                layer = cls(3, 4)
                layer.train()
                y = layer(x)
            except Exception as e:
                found.append([name + "." + cname, "no output"])
                continue
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
            bn = (x - mean) / torch.sqrt(var + 1e-5)
            works = isinstance(y, torch.Tensor) and y.shape == x.shape and torch.allclose(y, bn, atol=1e-4)
            found.append([name + "." + cname, "WORKS" if works else "differs"])
print(json.dumps(found))
''')
    modules = sorted({".".join(f.relative_to(site).with_suffix("").parts).removesuffix(".__init__") for f in py
                      if "inside" not in f.parts and f.stem != "__main__"})  # inside/: the sandbox's own
    r = subprocess.run([str(v / "bin" / "python"), str(probe), *modules], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout.splitlines()[-1])
    assert not [f for f in found if f[1] == "WORKS"], found
    assert any(f[0].endswith("FrozenNorm") and f[1] == "differs" for f in found), found
    # the student edition cannot be made to compute: the full oracle and the pack maker are absent
    r = subprocess.run([str(v / "bin" / "python"), "-c", "import grader.checks.computed"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "No module named" in r.stderr
    r = subprocess.run([str(v / "bin" / "python"), "-c", "import reference.batchnorm"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0


def _student_grade(v, tmp_path, sub, *extra):
    out = tmp_path / sub.stem
    r = subprocess.run([str(v / "bin" / "bn-grade"), str(sub), "--pack", str(PACK), "--no-train", "--lang", "en",
                        "--no-color", "--json", str(out.with_suffix(".json")), *extra], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=300)
    return r, out.with_suffix(".json")


@pytest.mark.parametrize("sub", [ROOT / "student_template" / "batchnorm.py", CORPUS / "mistake_two_reversed_swapped.py",
                                 CORPUS / "mistake_no_keepdim.py"], ids=lambda p: p.name)
def test_student_edition_grades_like_the_full_edition(venv, tmp_path, sub, rubric):
    from grader.grading import grade_file
    _, v, _ = venv
    r, path = _student_grade(v, tmp_path, sub)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(path.read_text())
    full = grade_file(sub, rubric, ZYGOTE)  # the full edition, in this process, same rubric and seed
    assert got["score"] == full.score and got["extra_data"]["max_score"] == full.max_score
    # per check the same verdict, points and mistakes named, most costly first
    want = {s.outcome.check_id: (s.passed, s.score, [d.code for d in s.outcome.diagnoses]) for s in full.checks}
    have = {cid: (c["passed"], c["score"], c["diagnoses"]) for cid, c in got["extra_data"]["checks"].items()}
    assert have == want
    assert [n["check"] for n in got["extra_data"]["not_run"]] == [c for c, _ in full.not_run]
    for s in full.checks:
        for d in s.outcome.diagnoses:
            assert d.title["en"] in r.stdout, (s.outcome.check_id, d.code)
    if sub.name.startswith("mistake_two"):
        assert "momentum convention reversed" in r.stdout and "gamma and beta swapped" in r.stdout


def test_student_edition_without_a_pack_says_how_to_grade(venv, tmp_path):
    _, v, _ = venv
    r = subprocess.run([str(v / "bin" / "bn-grade"), str(CORPUS / "correct_textbook.py"), "--no-train"], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "student edition" in r.stderr and "--pack" in r.stderr
    r = subprocess.run([str(v / "bin" / "bn-grade"), "pack", "--out", str(tmp_path / "x.bnpack")], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "student edition" in r.stderr
