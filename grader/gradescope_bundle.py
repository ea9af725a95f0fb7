"""`bn-grade gradescope-bundle`: writes the autograder zip an instructor uploads to Gradescope
(parent process, the instructor's machine; nothing here imports torch or runs student code).

The zip holds setup.sh (run once, as root, when Gradescope builds the image), run_autograder
(run per submission), the grader as a wheel (or a pinned pip requirement) and the private
rubric when one is given. run_autograder writes /autograder/results/results.json whatever
happens: when the grader cannot run or exits without results, an error result (score 0, the
reason, the last lines of the grader's log with machine paths removed) takes its place, so a
student never sees Gradescope's bare "autograder failed to produce any output".

BN_GRADESCOPE_ROOT (default /autograder) moves every path the two scripts use, for trying the
bundle in a simulated root (tests/test_gradescope_bundle.py).
"""
from __future__ import annotations

import importlib.metadata
import io
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import grader
from grader.errors import UsageError
from grader.output.files import write_atomic

SOURCE_ROOT = Path(__file__).resolve().parent.parent
# what a wheel is built from (pyproject.toml's packages): present in a checkout, not in an install
SHIPPED = ("pyproject.toml", "README.md", "grader", "reference", "rubrics", "student_template")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PRIVATE_RUBRIC = "private.yaml"


class BundleError(UsageError):
    """Bad input to the bundle command: one line, exit 2 (grader/cli.py)."""


def _pinned(dist: str) -> str:
    # the version the instructor graded with here, without the local build tag (+cpu, +cu121):
    # the CPU index serves the same version as +cpu
    try:
        return f"{dist}=={importlib.metadata.version(dist).split('+')[0]}"
    except importlib.metadata.PackageNotFoundError:
        return dist


def build_wheel(dest: Path) -> Path:
    """A wheel of this checkout, built from a copy (the build's scratch stays out of the tree)."""
    if not (SOURCE_ROOT / "pyproject.toml").exists():
        raise BundleError("this bn-grade is an installed copy, not a checkout: pass --wheel FILE (a built "
                          "bn_grader-*.whl) or --pip-spec REQUIREMENT (e.g. 'bn-grader==0.1.0')")
    src = dest / "src"
    src.mkdir(parents=True)
    for name in SHIPPED:
        p = SOURCE_ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif p.exists():
            shutil.copy2(p, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(dest / "dist"), str(src)], capture_output=True, text=True)
    wheels = sorted((dest / "dist").glob("bn_grader-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        raise BundleError(f"building the grader's wheel failed ({last}); pass --wheel FILE instead")
    return wheels[0]


SETUP = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (Ubuntu).
# Written by `bn-grade gradescope-bundle` (bn-grader {version}).
set -euo pipefail
ROOT="${{BN_GRADESCOPE_ROOT:-/autograder}}"
SOURCE="$ROOT/source"
VENV="$ROOT/bn-venv"
if [ "${{BN_SETUP_SKIP_APT:-0}}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # bubblewrap is the sandbox every submission runs in; Gradescope's container runs the grader
  # as root, where bn-grade refuses to grade others' code without it
  apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip bubblewrap
fi
# --system-site-packages: a torch already in the image is reused instead of installed twice;
# the image's pip (python3-pip) serves the venv, whose own bundled setuptools would shadow the
# image's newer one and make pip refuse torch's requirements
python3 -m venv --system-site-packages --without-pip "$VENV"
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  "$VENV/bin/python" -m ensurepip --upgrade
fi
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  # the CPU build: about 0.7 GB installed instead of about 5 GB for the default CUDA build
  "$VENV/bin/python" -m pip install --no-cache-dir --index-url {cpu_index} {torch} {torchvision}
fi
"$VENV/bin/python" -m pip install --no-cache-dir {grader}
# fails the image build now rather than every submission later
"$VENV/bin/python" -c "import grader.grading, grader.training.stage"
"""

RUN = r"""#!/usr/bin/env bash
# Gradescope runs this once per submission. It always leaves a results.json: the grader's, or
# an error result saying why there is none. Written by `bn-grade gradescope-bundle`.
ROOT="${{BN_GRADESCOPE_ROOT:-/autograder}}"
export BN_GRADESCOPE_ROOT="$ROOT"
RESULTS="$ROOT/results/results.json"
LOG="$ROOT/results/bn-grade.log"
BN_GRADE="${{BN_GRADE:-$ROOT/bn-venv/bin/bn-grade}}"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
args=(--gradescope --quiet {flags})
if [ -f "$ROOT/source/{private}" ]; then
  args+=(--rubric "$ROOT/source/{private}")
fi
cd "$ROOT/source" 2>/dev/null || cd "$ROOT"
"$BN_GRADE" "${{args[@]}}" >"$LOG" 2>&1
status=$?
cat "$LOG"
if python3 - "$RESULTS" "$LOG" "$status" "$ROOT" <<'PY'
import json, sys
results, log, status, root = sys.argv[1:5]
try:
    with open(results, encoding="utf-8") as f:
        data = json.load(f)
    ok = isinstance(data, dict) and "score" in data
except (OSError, ValueError):
    ok = False
if ok:
    sys.exit(0)
try:
    with open(log, encoding="utf-8", errors="replace") as f:
        tail = f.read().strip().splitlines()[-12:]
except OSError:
    tail = []
# the private rubric's location and the image's folders are nobody's business but the instructor's
tail = [line.replace(root + "/source/{private}", "the private rubric").replace(root, "<autograder>")
        for line in tail]
text = ("The autograder could not grade this submission (bn-grade exit status " + status + "). "
        "This is not a score for your work: tell your instructor.\n"
        "自动评分器未能完成评分（bn-grade 退出码 " + status + "）。这不是你的成绩，请联系老师。")
if tail:
    text += "\n\n" + "\n".join(tail)
with open(results, "w", encoding="utf-8") as f:
    json.dump({{"score": 0, "output": text, "tests": [],
               "extra_data": {{"error": True, "exit_status": int(status) if status.isdigit() else status}}}},
              f, ensure_ascii=False, indent=2)
PY
then :
else
  # no Python at all: a fixed error result, still valid JSON
  printf '%s\n' '{{"score": 0, "output": "The autograder could not run (no Python in the image): tell your instructor. 自动评分器无法运行，请联系老师。", "tests": [], "extra_data": {{"error": true}}}}' >"$RESULTS"
fi
exit 0
"""


def _executable(zf: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16  # rwxr-xr-x: Gradescope runs both scripts directly
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, text)


def write(out: Path, *, rubric: Path | None = None, wheel: Path | None = None, pip_spec: str | None = None,
          train: bool = False, lang: str | None = None, data_dir: str | None = None) -> list[str]:
    """Writes the zip; returns the names in it. Raises BundleError for bad input."""
    if wheel is not None and pip_spec:
        raise BundleError("--wheel and --pip-spec: give one of them")
    if wheel is not None:
        if not wheel.is_file():
            raise BundleError(f"--wheel {wheel}: no such file")
        if not wheel.name.endswith(".whl"):
            raise BundleError(f"--wheel {wheel}: not a .whl file")
    if rubric is not None:
        from grader import rubric as rubric_mod
        from grader.grading import known_checks
        try:
            rubric_mod.load(rubric, known_checks=known_checks())  # a broken rubric fails here, not on Gradescope
        except rubric_mod.RubricError as e:
            raise BundleError(str(e)) from None
    if out.is_dir():
        raise BundleError(f"--out {out}: is a folder; give the zip's file name")
    with tempfile.TemporaryDirectory(prefix="bn-grade-bundle-") as scratch:
        if wheel is None and not pip_spec:
            wheel = build_wheel(Path(scratch))
        grader_req = f'"$SOURCE/{wheel.name}"' if wheel is not None else shlex.quote(pip_spec)
        flags = [] if train else ["--no-train"]
        if lang:
            flags += ["--lang", lang]
        if train and data_dir:
            flags += ["--data", data_dir]
        setup = SETUP.format(version=grader.__version__, cpu_index=CPU_INDEX, torch=shlex.quote(_pinned("torch")),
                             torchvision=shlex.quote(_pinned("torchvision")), grader=grader_req)
        run = RUN.format(flags=" ".join(shlex.quote(f) for f in flags), private=PRIVATE_RUBRIC)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            _executable(zf, "setup.sh", setup)
            _executable(zf, "run_autograder", run)
            if wheel is not None:
                zf.write(wheel, wheel.name)
            if rubric is not None:
                zf.write(rubric, PRIVATE_RUBRIC)
            names = zf.namelist()
    try:
        write_atomic(out, buf.getvalue())
    except OSError as e:
        raise BundleError(f"--out {out}: cannot write: {e.strerror}") from None
    return names


def main(argv: list[str]) -> int:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            raise BundleError(message)

    p = _Parser(prog="bn-grade gradescope-bundle",
                description="Write the autograder zip to upload to Gradescope (docs/gradescope.md).")
    p.add_argument("--out", required=True, metavar="ZIP", help="the zip to write, e.g. autograder.zip")
    p.add_argument("--rubric", metavar="YAML", help="your private rubric (shipped as private.yaml; checked now)")
    p.add_argument("--wheel", metavar="WHL", help="the grader's wheel to ship (default: built from this checkout)")
    p.add_argument("--pip-spec", metavar="REQ", help="install the grader from this pinned requirement instead of a "
                   "shipped wheel, e.g. 'bn-grader==0.1.0' or 'git+https://.../bn-grader.git@v0.1.0'")
    p.add_argument("--train", action="store_true", help="run the training stage too (needs --data inside the image "
                   "and a larger container: docs/gradescope.md)")
    p.add_argument("--data", metavar="DIR", help="CIFAR-10 inside the image, with --train")
    p.add_argument("--lang", choices=("en", "zh"), help="language of the results students see")
    a = p.parse_args(argv)
    if a.data and not a.train:
        raise BundleError("--data is for --train")
    names = write(Path(a.out), rubric=Path(a.rubric) if a.rubric else None, wheel=Path(a.wheel) if a.wheel else None,
                  pip_spec=a.pip_spec, train=a.train, lang=a.lang, data_dir=a.data)
    print(f"Autograder: {a.out} ({', '.join(names)}); upload it under Configure Autograder (docs/gradescope.md)")
    return 0
