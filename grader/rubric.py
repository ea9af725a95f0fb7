"""The rubric: YAML -> typed, validated config (parent process only).

Unknown keys and wrong types are errors naming the file and the key, so a typo in an
instructor's private rubric can never silently change what is graded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from grader.errors import UsageError

DEFAULT_RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "batchnorm.yaml"


class RubricError(UsageError):
    """One line: the file and what is wrong in it."""


@dataclass
class Tolerance:
    rtol: float
    atol: float


# torch.testing.assert_close's defaults
DEFAULT_TOLERANCES = {
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float16": Tolerance(rtol=1e-3, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
}


@dataclass
class Limits:
    load_seconds: float = 20.0  # importing the submission
    call_seconds: float = 10.0  # one request (a forward, a backward, ...)
    total_seconds: float = 120.0  # the whole sandboxed session
    output_bytes: int = 20000  # captured student prints kept for the report
    memory_mb: int = 4096  # address space a worker may add (CPU runs; CUDA needs its own reservations)
    file_mb: int = 64  # largest file a worker may write, its captured output included
    processes: int = 64  # processes a worker may start


@dataclass
class Training:
    # calibrated on the course's JPEG copy of CIFAR-10 on a 2-core CPU: docs/calibration.md
    epochs: int = 5
    batch_size: int = 128
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # the optimiser's, not BatchNorm's
    weight_decay: float = 0.0
    seed: int = 0  # initial weights, batch order and the validation split
    val_fraction: float = 0.1
    max_train_images: int = 0  # 0: all; fewer for a quick run
    device: Literal["auto", "cpu", "cuda"] = "auto"
    activation: Literal["sigmoid", "relu"] = "sigmoid"  # the course's LeNet-5 uses sigmoid
    accuracy_margin: float = 0.03  # the student's test accuracy may be this far below the reference BN's
    min_gain_over_no_bn: float = 0.0  # BN must beat no BN by more than this
    time_limit_seconds: float = 1200.0  # the student's run, in the sandbox


@dataclass
class CheckSpec:
    id: str
    title: dict[str, str]
    points: float
    visibility: Literal["visible", "hidden"] = "visible"
    # advisory checks are notes: they never cost points, whatever `points` says
    advisory: bool = False
    tolerances: dict[str, Tolerance] = field(default_factory=dict)


@dataclass
class Rubric:
    seed: int
    checks: list[CheckSpec]
    name: str = "BatchNorm homework"
    language: Literal["auto", "en", "zh"] = "auto"  # of titles, hints and the report; auto: the locale's
    # which running variance the slides' convention accepts; torch.nn keeps the unbiased one
    running_var: Literal["biased", "unbiased", "either"] = "either"
    # what a built-in normalisation costs: the checks it was used in, or the whole submission
    builtin_norm_zeroes: Literal["affected", "all"] = "affected"
    # a layer that switches to eval on torch.is_grad_enabled() alone (the textbook's switch): full
    # marks, as the course evaluates under torch.no_grad(); or `costs`: eval.frozen also runs an
    # eval pass with grad enabled
    grad_mode_only: Literal["full", "costs"] = "full"
    limits: Limits = field(default_factory=Limits)
    training: Training = field(default_factory=Training)
    # merged over DEFAULT_TOLERANCES: a rubric names only the dtypes it changes
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    # filled by load(), not by the YAML
    path: str = ""
    sha256: str = ""

    def seed_for(self, check_id: str) -> int:
        # pytest-randomly style: every check reseeds from base + crc32(id), so adding or
        # reordering checks never shifts the inputs of another
        return (self.seed + zlib.crc32(check_id.encode())) % (2**31)

    def tolerance(self, check: CheckSpec | None, dtype_name: str) -> Tolerance:
        if check is not None and dtype_name in check.tolerances:
            return check.tolerances[dtype_name]
        return self.tolerances.get(dtype_name, self.tolerances["float32"])

    def spec(self, check_id: str) -> CheckSpec | None:
        for c in self.checks:
            if c.id == check_id:
                return c
        return None


_NOT_FROM_YAML = {"path", "sha256"}


def _convert(value, tp, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RubricError(f"{where}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)} - _NOT_FROM_YAML
        unknown = sorted(set(value) - names)
        if unknown:
            raise RubricError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(names))})")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in _NOT_FROM_YAML:
                continue
            sub = f"{where}.{f.name}" if where else f.name
            if f.name in value:
                kwargs[f.name] = _convert(value[f.name], hints[f.name], sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RubricError(f"{sub}: missing")
        return tp(**kwargs)
    if origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise RubricError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RubricError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RubricError(f"{where}: expected a mapping, got {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise RubricError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RubricError(f"{where}: expected a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RubricError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise RubricError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RubricError(f"{where}: expected text, got {value!r}")
        return value
    raise TypeError(f"rubric schema has an unsupported type {tp!r} at {where}")


def load(path: str | Path | None = None, known_checks: typing.Iterable[str] = ()) -> Rubric:
    path = Path(path) if path is not None else DEFAULT_RUBRIC
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RubricError(f"{path}: no such rubric file") from None
    except OSError as e:
        raise RubricError(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise RubricError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    try:
        rubric = _convert(data, Rubric, "")
    except RubricError as e:
        raise RubricError(f"{path}: {e}") from None
    known = set(known_checks)
    seen = set()
    for i, c in enumerate(rubric.checks):
        if known and c.id not in known:
            raise RubricError(f"{path}: checks[{i}].id: unknown check '{c.id}' (known: {', '.join(sorted(known))})")
        if c.id in seen:
            raise RubricError(f"{path}: checks[{i}].id: '{c.id}' appears twice")
        if c.points < 0:
            raise RubricError(f"{path}: checks[{i}].points: must not be negative")
        missing = {"en", "zh"} - set(c.title)
        if missing:
            raise RubricError(f"{path}: checks[{i}].title: needs both 'en' and 'zh' (missing {', '.join(sorted(missing))})")
        seen.add(c.id)
    for where, tols in [("tolerances", rubric.tolerances)] + [
            (f"checks[{i}].tolerances", c.tolerances) for i, c in enumerate(rubric.checks)]:
        for dt, tol in tols.items():
            if dt not in ("float16", "bfloat16", "float32", "float64"):
                raise RubricError(f"{path}: {where}.{dt}: unknown dtype (float16, bfloat16, float32, float64)")
            if tol.rtol < 0 or tol.atol < 0:
                raise RubricError(f"{path}: {where}.{dt}: tolerances must not be negative")
    for name, val in ("load_seconds", rubric.limits.load_seconds), ("call_seconds", rubric.limits.call_seconds), \
            ("total_seconds", rubric.limits.total_seconds), ("output_bytes", rubric.limits.output_bytes), \
            ("memory_mb", rubric.limits.memory_mb), ("file_mb", rubric.limits.file_mb), \
            ("processes", rubric.limits.processes):
        if val <= 0:
            raise RubricError(f"{path}: limits.{name}: must be positive")
    t = rubric.training
    for name in ("epochs", "batch_size"):
        if getattr(t, name) < 1:
            raise RubricError(f"{path}: training.{name}: must be at least 1")
    if not 0 < t.val_fraction < 1:
        raise RubricError(f"{path}: training.val_fraction: must be between 0 and 1")
    if t.lr <= 0 or t.time_limit_seconds <= 0 or t.max_train_images < 0:
        raise RubricError(f"{path}: training: lr and time_limit_seconds must be positive, max_train_images >= 0")
    rubric.tolerances = {**DEFAULT_TOLERANCES, **rubric.tolerances}
    rubric.path = str(path)
    rubric.sha256 = hashlib.sha256(raw).hexdigest()
    return rubric
