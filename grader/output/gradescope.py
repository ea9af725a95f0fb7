"""results.json in Gradescope's autograder format (parent process).

Top level: score, execution_time, output, tests[]; everything else is under extra_data.
Hidden checks show students only passed/failed; their details go to extra_data, which
Gradescope keeps from students.
"""
import json
from dataclasses import asdict

from grader.output.files import write_atomic
from grader.output.text import check_text
from grader.results import GradeResult


def summary_line(r: GradeResult) -> str:
    return f"{r.score:g}/{r.max_score:g}"


def to_gradescope(r: GradeResult, lang: str = "en") -> dict:
    tests = []
    hidden = {}
    for i, s in enumerate(r.checks, 1):
        o = s.outcome
        t = {"name": f"{o.check_id}: {s.title[lang]}", "number": str(i), "score": s.score, "max_score": s.max_score,
             "status": "passed" if (s.passed or s.advisory) else "failed", "output": check_text(s, lang),
             "visibility": "visible"}
        if s.advisory:
            t["tags"] = ["advisory"]
        tests.append(t)
        if s.visibility == "hidden":
            hidden[o.check_id] = check_text(s.__class__(o, s.title, s.score, s.max_score, "visible", s.advisory,
                                                        s.zeroed), lang)
    lines = [f"Score {summary_line(r)} ({r.status.value})"]
    if r.reason:
        lines.append(r.reason)
    lines += [f"Note: {n}" for n in r.notes]
    for what, why in r.not_run:
        lines.append(f"Not run: {what}: {why}")
    f = r.facts
    extra = {
        "status": r.status.value, "reason": r.reason, "seed": f.seed, "torch_version": f.torch_version,
        "device": f.device, "rubric": f.rubric_path, "rubric_hash": f.rubric_hash, "submission": r.submission,
        "submission_hash": r.submission_hash, "grader_version": f.grader_version, "python": f.python,
        "max_score": r.max_score, "flags": r.flags, "not_run": [{"check": a, "reason": b} for a, b in r.not_run],
        "student": r.student, "notes": r.notes, "sandbox": r.sandbox,
        "checks": {s.outcome.check_id: {"passed": s.passed, "score": s.score, "max_score": s.max_score,
                                        "advisory": s.advisory, "diagnosis": s.outcome.diagnosis.code
                                        if s.outcome.diagnosis else None,
                                        "metrics": asdict(s.outcome.metrics) if s.outcome.metrics else None,
                                        "builtin_ops": s.outcome.builtin_ops}
                   for s in r.checks},
        "hidden_details": hidden, "student_output": r.student_output,
    }
    if r.training is not None:
        extra["training"] = r.training
    return {"score": r.score, "execution_time": r.seconds, "output": "\n".join(lines), "tests": tests,
            "extra_data": extra}


def write_json(r: GradeResult, path, lang: str = "en") -> None:
    write_atomic(path, json.dumps(to_gradescope(r, lang), ensure_ascii=False, indent=2))
