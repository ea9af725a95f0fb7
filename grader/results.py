"""Result types: the data every stage passes along (parent process only).

checks/ produce CheckOutcome, scoring.py turns them into ScoredCheck and a GradeResult,
output/ renders a GradeResult. Nothing here imports torch, so the writers stay light.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ExitStatus(enum.IntEnum):
    OK = 0  # grading completed, whatever the score
    BELOW_THRESHOLD = 1  # --fail-under not met
    USAGE = 2  # bad path, flag or rubric
    INTERNAL = 3  # a grader bug; the traceback is shown with --debug


class RunStatus(str, enum.Enum):
    GRADED = "graded"
    ERROR = "error"  # the submission could not be loaded or crashed the child
    TIMEOUT = "timeout"
    MEMORY = "memory"  # loading the submission ran out of its memory limit


@dataclass
class Metrics:
    max_abs: float
    max_rel: float
    worst_channel: int | None
    atol: float
    rtol: float
    mismatched: int = 0
    total: int = 0


@dataclass
class Diagnosis:
    code: str
    title: dict  # {"en": ..., "zh": ...}
    hint: dict


@dataclass
class CheckOutcome:
    check_id: str
    passed: bool | None  # None: the check was not run (reason in skipped)
    message: str = ""
    expected: str = ""
    got: str = ""
    metrics: Metrics | None = None
    diagnosis: Diagnosis | None = None
    notes: list = field(default_factory=list)
    skipped: str = ""
    # a built-in normalisation was seen while this check ran
    builtin_ops: list = field(default_factory=list)
    # every mistake named, most costly first; diagnosis is the first of them
    diagnoses: list = field(default_factory=list)

    def __post_init__(self):
        if self.diagnosis is not None and not self.diagnoses:
            self.diagnoses = [self.diagnosis]
        elif self.diagnoses and self.diagnosis is None:
            self.diagnosis = self.diagnoses[0]


@dataclass
class ScoredCheck:
    outcome: CheckOutcome
    title: dict
    score: float
    max_score: float
    visibility: str  # visible | hidden
    advisory: bool
    zeroed: str = ""  # why a passing check scored nothing (built-in normalisation)

    @property
    def passed(self) -> bool:
        return bool(self.outcome.passed) and not self.zeroed


@dataclass
class RunFacts:
    seed: int
    torch_version: str
    device: str
    rubric_path: str
    rubric_hash: str
    grader_version: str
    python: str
    # what students see instead of rubric_path (a path on the grading machine)
    rubric_name: str = ""


@dataclass
class GradeResult:
    submission: str
    submission_hash: str
    status: RunStatus
    reason: str
    checks: list  # [ScoredCheck]
    score: float
    max_score: float
    facts: RunFacts
    seconds: float
    student_output: str = ""
    not_run: list = field(default_factory=list)  # [(what, why)]
    flags: list = field(default_factory=list)
    training: dict | None = None  # the training stage's facts and curves (extra_data.training)
    notes: list = field(default_factory=list)  # from intake: which file of a folder/zip/notebook was graded
    student: str = ""  # the student id in a batch
    sandbox: dict = field(default_factory=dict)  # how the worker was confined: network, user
    # integrity flags from the parent's source scan, for the instructor; never points:
    # [{code, severity (needs_review|info), file, message {en, zh}, evidence [{line, text, what}]}]
    review: list = field(default_factory=list)
    # how max_score follows from the rubric (scoring.maximum(): points, rubric_points, left_out)
    maximum: dict = field(default_factory=dict)

    @property
    def needs_review(self) -> list:
        return [e for e in self.review if e.get("severity") == "needs_review"]
