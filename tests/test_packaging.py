"""The wheel: built from a copy of the source, installed NON-editable into a fresh venv, and
used from elsewhere to grade a bundled submission. The editable install the suite itself runs
under hides a missing package (grader/training/ once was); this test does not.

The venv sees the machine's torch (--system-site-packages) and pip installs with --no-index,
so nothing is downloaded and the test takes seconds, not a 5 GB CUDA download.
"""
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT

SHIPPED = ("pyproject.toml", "README.md", "grader", "reference", "rubrics", "student_template")


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"  # never the network
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def build_wheel(dest: Path) -> Path:
    """A wheel built from a copy of the tree (the build writes build/ and *.egg-info beside the
    sources; the shared checkout stays untouched)."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in SHIPPED:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dest / "dist"), str(src)], check=True, env=_clean_env(), capture_output=True, timeout=300)
    (wheel,) = (dest / "dist").glob("bn_grader-*.whl")
    return wheel


def install_venv(dest: Path, wheel: Path) -> Path:
    """A fresh venv with the machine's torch visible and the wheel installed into it; returns its bin/."""
    venv = dest / "venv"
    # --without-pip: the system's pip (visible through --system-site-packages) installs into the
    # venv just as well, and ensurepip would cost ~10 s
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)
    if sys.prefix != sys.base_prefix:
        # the suite itself runs in a venv (a student's laptop): --system-site-packages then shows
        # the base Python's packages, not this venv's torch and pip; a .pth file shows those
        (site_dir,) = (venv / "lib").glob("python*/site-packages")
        (site_dir / "_suite_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   env=_clean_env(), capture_output=True, timeout=300)
    return venv / "bin"


@pytest.fixture(scope="module")
def installed():
    # not under /tmp: the sandbox mounts a private /tmp over it, so an interpreter installed
    # there cannot start inside (docs/gradescope.md says where the venv goes)
    d = Path(tempfile.mkdtemp(prefix="bn-grade-wheel-", dir=os.environ.get("BN_TEST_VENV_ROOT", "/var/tmp")))
    try:
        wheel = build_wheel(d)
        yield wheel, install_venv(d, wheel), d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_wheel_holds_every_package_and_data_file(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    # every package of the source tree, found on disk rather than listed, so a new one cannot be forgotten
    for init in ROOT.glob("grader/**/__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, init
    for pattern in ("grader/output/templates/*.j2", "grader/checks/*.json", "rubrics/*.yaml", "reference/*.py",
                    "grader/**/*.py"):
        for f in ROOT.glob(pattern):
            if "__pycache__" not in f.parts:
                assert f.relative_to(ROOT).as_posix() in names, f


def test_non_editable_install_grades_a_bundled_submission(installed, tmp_path):
    _, bin_dir, _ = installed
    env = _clean_env()
    probe = subprocess.run([str(bin_dir / "python"), "-c",
                            "import grader, grader.grading, grader.training.stage, grader.training.lenet; print(grader.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    # the installed copy, not the checkout (whose editable install the system's site-packages holds)
    assert str(bin_dir.parent) in probe.stdout and str(ROOT) not in probe.stdout
    out = tmp_path / "o"
    run = subprocess.run([str(bin_dir / "bn-grade"), str(CORPUS / "mistake_reversed_momentum.py"), "--no-train",
                          "--lang", "en", "--no-color", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "momentum convention reversed" in run.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["score"] < data["extra_data"]["max_score"]
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
