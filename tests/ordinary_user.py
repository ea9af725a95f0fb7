"""Run part of this test suite as an ordinary (non-root) user, from a root test run.

Instructors grade on their own laptop, CI runs as a plain user: the sandbox must hold there too.
As root, a test creates the user (useradd), gives it a virtual environment from the system
Python (root's own Python may sit under a private home) with the CPU build of torch, copies the
checkout to a folder the user owns, and runs pytest there as that user. The environment is
kept between runs (keyed by what it installs), so only the first run pays for it.
"""
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["torch", "pyyaml", "jinja2", "pytest", "pytest-timeout"]


def _system_python() -> str:
    v = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (f"/usr/bin/{v}", "/usr/bin/python3", f"/usr/local/bin/{v}"):
        if os.path.exists(cand):
            return cand
    return sys.executable


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def _as(user, argv, **kw):
    return subprocess.run(argv, user=user.pw_uid, group=user.pw_gid, extra_groups=[], **kw)


def _packages() -> list[str]:
    # the CPU build of torch where pip's find-links folder has one (as on the CI machine): a
    # tenth of the CUDA build's size
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        if os.path.isdir(folder):
            wheels = sorted(f for f in os.listdir(folder) if f.startswith("torch-") and "+cpu" in f
                            and f.endswith(".whl") and f"cp{sys.version_info.major}{sys.version_info.minor}" in f)
            if wheels:
                return [os.path.join(folder, wheels[-1])] + PACKAGES[1:]
    return PACKAGES


def ensure_venv(user) -> Path:
    python = _system_python()
    packages = _packages()
    key = hashlib.sha256((python + " ".join(packages)).encode()).hexdigest()[:12]
    venv = Path(user.pw_dir) / f"bn-grade-venv-{key}"
    if (venv / "ok").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    _as(user, [python, "-m", "venv", str(venv)], check=True, capture_output=True, cwd=user.pw_dir)
    env = {**os.environ, "HOME": user.pw_dir}
    r = _as(user, [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"] + packages,
            env=env, capture_output=True, text=True, timeout=1200, cwd=user.pw_dir)
    if r.returncode:
        raise RuntimeError(f"could not set up the ordinary user's venv: {r.stderr[-2000:]}")
    (venv / "ok").write_text("")
    return venv


def run_as_user(name: str, pytest_args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    user = ensure_user(name)
    venv = ensure_venv(user)
    checkout = Path(user.pw_dir) / "bn-grader-checkout"
    shutil.rmtree(checkout, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            dst = checkout / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(checkout)], check=True)
    env = {"PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": user.pw_dir, "LANG": "C.UTF-8"}
    for k in ("CI", "BN_GRADE_SANDBOX"):
        if k in os.environ:
            env[k] = os.environ[k]
    return _as(user, [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider"] + pytest_args,
               cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
