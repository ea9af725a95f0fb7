"""Builds the student edition's wheel (bn-grader-student) from this checkout (instructor or CI
machine; runs pip, imports nothing of the grader).

The wheel is built from a staged copy: grader/ without the modules that compute a BatchNorm
(WITHHELD), the rubrics, and this folder's
pyproject.toml and README.md. tests/test_pack.py installs it into a fresh venv and searches what
got installed.

    python student_edition/build.py --out dist/        # writes dist/bn_grader_student-<version>-py3-none-any.whl
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# what would hand a student the answer: the reference layer, the variants as formulas (Variant()
# is the course's formula), the oracle that runs them, and the pack maker that needs them
WITHHELD = ("reference/batchnorm.py", "grader/checks/variants.py", "grader/checks/computed.py", "grader/packmaker.py")


def stage(dest: Path) -> Path:
    """A source tree for the student wheel in dest/src."""
    src = dest / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "grader", src / "grader", ignore=ignore)
    shutil.copytree(ROOT / "rubrics", src / "rubrics", ignore=ignore)
    for rel in WITHHELD:
        (src / rel).unlink(missing_ok=True)
    shutil.copy2(HERE / "pyproject.toml", src / "pyproject.toml")
    shutil.copy2(HERE / "README.md", src / "README.md")
    return src


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")  # never the network
    with tempfile.TemporaryDirectory(prefix="bn-student-build-") as d:
        src = stage(Path(d))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out), str(src)], check=True, env=env, capture_output=True, timeout=300)
    wheels = sorted(out.glob("bn_grader_student-*.whl"), key=lambda p: p.stat().st_mtime)
    return wheels[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build the student edition's wheel (bn-grader-student).")
    p.add_argument("--out", default="dist", help="folder for the wheel (default: dist/)")
    a = p.parse_args(argv)
    print(build(Path(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
