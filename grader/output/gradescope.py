"""results.json in Gradescope's autograder format (parent process).

Top level: score, execution_time, output, tests[]; everything else is under extra_data. The
integrity review (checks/static.py) is in both: extra_data.review and the first lines of output.
Hidden checks show students only passed/failed; their details go to extra_data, which
Gradescope keeps from students.
"""
import json
import os
from dataclasses import asdict

from grader.output.files import write_atomic
from grader.output.i18n import TEXT, reason, skipped
from grader.output.text import check_text, maximum_text
from grader.results import GradeResult


def summary_line(r: GradeResult) -> str:
    return f"{r.score:g}/{r.max_score:g}"


def review_lines(r: GradeResult, lang: str = "en") -> list[str]:
    """The integrity flags as plain text, needs-review first: a line per flag, then for a
    needs-review flag one `file:line: text` per piece of evidence (the submission's file name,
    never a path)."""
    head = {"needs_review": TEXT["review_head_needs"], "info": TEXT["review_head_info"]}
    lines = []
    for severity in ("needs_review", "info"):
        for e in (x for x in r.review if x.get("severity") == severity):
            sim = f" [{e['similarity']:.2f}]" if e.get("similarity") is not None else ""
            lines.append(f"{head[severity][lang]}: {e['code']}{sim}: {e['message'][lang]}")
            if severity == "needs_review":  # an informational flag's evidence stays in extra_data
                lines += [f"  {e['file']}:{ev['line']}: {ev['text']}" for ev in e["evidence"]]
    return lines


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
    T = {k: v[lang] for k, v in TEXT.items()}
    lines = [f"{T['score']} {summary_line(r)} ({T[r.status.value]})"]
    # first, where whoever opens the result sees it at once
    lines += review_lines(r, lang)
    if r.maximum:
        lines.append(maximum_text(r.maximum, lang))
    if r.reason:
        lines.append(reason(r.status.value, r.reason, lang))
    lines += [f"{T['note']}: {n}" for n in r.notes]
    for what, why in r.not_run:
        lines.append(f"{T['not_run']}: {what}: {skipped(why, lang)}")
    f = r.facts
    extra = {
        "status": r.status.value, "reason": r.reason, "seed": f.seed, "torch_version": f.torch_version,
        # names, not paths: a path of the grading machine (a private rubric's above all) is nobody's business
        "device": f.device, "rubric": os.path.basename(f.rubric_path), "rubric_name": f.rubric_name,
        "rubric_hash": f.rubric_hash, "submission": os.path.basename(r.submission),
        "submission_hash": r.submission_hash, "grader_version": f.grader_version, "python": f.python,
        "max_score": r.max_score, "flags": r.flags, "not_run": [{"check": a, "reason": b} for a, b in r.not_run],
        "student": r.student, "notes": r.notes, "sandbox": r.sandbox, "review": r.review,
        "checks": {s.outcome.check_id: {"title": s.title, "passed": s.passed, "score": s.score, "max_score": s.max_score,
                                        "advisory": s.advisory, "diagnosis": s.outcome.diagnosis.code
                                        if s.outcome.diagnosis else None,
                                        "diagnoses": [d.code for d in s.outcome.diagnoses],
                                        "metrics": asdict(s.outcome.metrics) if s.outcome.metrics else None,
                                        "builtin_ops": s.outcome.builtin_ops}
                   for s in r.checks},
        "hidden_details": hidden, "student_output": r.student_output,
    }
    if r.maximum:
        # how max_score follows from the rubric (grader/scoring.py), and the sentence every output says
        extra["maximum"] = {**r.maximum, "statement": {k: maximum_text(r.maximum, k) for k in ("en", "zh")}}
    if r.training is not None:
        extra["training"] = r.training
    return {"score": r.score, "execution_time": r.seconds, "output": "\n".join(lines), "tests": tests,
            "extra_data": extra}


def write_json(r: GradeResult, path, lang: str = "en") -> None:
    write_atomic(path, json.dumps(to_gradescope(r, lang), ensure_ascii=False, indent=2))
