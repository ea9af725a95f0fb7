"""GitHub Actions and GitHub Classroom output of one graded submission (a step of the student's
workflow, after bn-grade; reads only the results.json bn-grade wrote, never runs student code).

  python -m grader.output.github grade/results.json --file batchnorm.py [--lang zh]

- appends a job summary (score table, the likely mistakes with their hints) to
  $GITHUB_STEP_SUMMARY;
- prints `::error file=...,line=...::` workflow commands, one per likely mistake, at the line
  of the submission the mistake is about (a load error at its own line), so GitHub marks it in
  the file view and the pull request;
- writes `result=<base64 JSON>` to $GITHUB_OUTPUT in the shape GitHub Classroom's grading
  reporter reads (max_score, status, tests[] with name, status, score), so Classroom gets the
  points.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
from pathlib import Path

from grader.output.i18n import TEXT

# where in the class a mistake is usually written: the first line of BatchNorm2d matching the
# pattern of the first code prefix that fits (a marker for the student, not a proof)
WHERE = [
    (("eps_",), [r"sqrt", r"\beps\b"]),
    (("builtin_norm",), [r"batch_norm|BatchNorm\w*\(|layer_norm|instance_norm|group_norm"]),
    (("wrong_axes", "no_keepdim", "unbiased_var_in_norm", "fragile_variance"),
     [r"\.mean\(|\.var\(|var_mean\(|\bdim\s*=|sum\("]),
    (("gamma_", "beta_", "affine_"), [r"self\.gamma\s*\*|\*\s*self\.gamma", r"self\.beta"]),
    (("params_not_parameters", "wrong_param_shape", "wrong_init", "not_buffers", "state_shape"),
     [r"self\.(gamma|beta|moving_mean|moving_var)\s*=|register_buffer"]),
    (("inplace_input",), [r"\b\w+\s*[-+*/]=|\.(sub_|add_|mul_|div_)\("]),
    (("batch_stats_in_eval", "eval_", "running_in_train_norm", "training_argument", "grad_mode_switching",
      "ignores_training_flag", "running_updated_in_eval"), [r"self\.training|is_grad_enabled"]),
    (("reversed_momentum", "momentum_", "running_", "unbiased_running_var", "std_in_running_var", "stats_"),
     [r"momentum\s*\*|\*\s*self\.momentum|momentum\)", r"moving_(mean|var)\s*=", r"momentum"]),
    (("grad_missing",), [r"detach|no_grad"]),
    (("numpy_on_tensor",), [r"\bnp\.|numpy"]),
]


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def class_lines(source: str) -> tuple[int, int]:
    """(first, last) line of `class BatchNorm2d`, 1-based; (1, len) when it is not found."""
    lines = source.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"class\s+BatchNorm2d\b", ln)), None)
    if start is None:
        return 1, max(1, len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()
                and not lines[i].lstrip().startswith("#")), len(lines))
    return start + 1, end


def line_of(code: str, source: str) -> int | None:
    first, last = class_lines(source)
    lines = source.splitlines()
    # forward first: that is where most mistakes are written; then the whole class
    fwd = next((n for n in range(first, last + 1) if re.match(r"\s+def\s+forward\b", lines[n - 1])), first)
    for prefixes, patterns in WHERE:
        if code.startswith(prefixes):
            for pattern in patterns:
                for lo in (fwd, first):
                    for n in range(lo, last + 1):
                        if re.search(pattern, lines[n - 1]):
                            return n
            break
    return first if lines else None


def mistakes(data: dict, lang: str) -> list[dict]:
    """Each likely mistake once, costliest first: code, title, hint, points lost, advisory."""
    from grader.checks.mistakes import CATALOGUE  # the titles and hints, in both languages
    found = {}
    for cid, c in (data.get("extra_data", {}).get("checks") or {}).items():
        if c.get("passed"):
            continue
        codes = c.get("diagnoses") or ([c["diagnosis"]] if c.get("diagnosis") else [])
        for k, code in enumerate(codes):
            m = found.setdefault(code, {"code": code, "points": 0.0, "checks": [], "advisory": bool(c.get("advisory"))})
            if k == 0:
                m["points"] += (c.get("max_score") or 0) - (c.get("score") or 0)
            m["checks"].append(cid)
            m["advisory"] = m["advisory"] and bool(c.get("advisory"))
    out = []
    for m in found.values():
        d = CATALOGUE.get(m["code"])
        m["title"] = d.title[lang] if d else m["code"]
        m["hint"] = d.hint[lang] if d else ""
        out.append(m)
    return sorted(out, key=lambda m: (m["advisory"], -m["points"], m["code"]))


def annotations(data: dict, source: str, filename: str, lang: str = "en") -> list[str]:
    out = []
    ex = data.get("extra_data", {})
    reason = ex.get("reason") or ""
    if reason:
        m = re.search(r"line (\d+)", reason)
        where = f"file={_escape_prop(filename)}" + (f",line={m.group(1)}" if m else "")
        first = reason.strip().splitlines()[0] if reason.strip() else reason
        out.append(f"::error {where},title={_escape_prop(TEXT['error'][lang])}::{_escape_data(first)}")
    for m in mistakes(data, lang):
        n = line_of(m["code"], source)
        kind = "notice" if m["advisory"] else "error"
        cost = "" if m["advisory"] else f" (−{m['points']:g})"
        where = f"file={_escape_prop(filename)}" + (f",line={n}" if n else "")
        out.append(f"::{kind} {where},title={_escape_prop(m['title'] + cost)}::{_escape_data(m['hint'])}")
    return out


def summary(data: dict, lang: str = "en") -> str:
    T = {k: v[lang] for k, v in TEXT.items()}
    ex = data.get("extra_data", {})
    mx = ex.get("max_score", 0) or 0
    lines = [f"## {T['report']}: {data.get('score', 0):g} / {mx:g}", ""]
    if ex.get("reason"):
        lines += [f"**{T['reason']}:** `{ex['reason'].strip().splitlines()[0]}`", ""]
    found = [m for m in mistakes(data, lang) if not m["advisory"]]
    if found:
        lines += [f"### {T['one_mistake'] if len(found) == 1 else T['n_mistakes'].format(n=len(found))}", ""]
        for m in found:
            cost = T["costs"].format(points=f"{m['points']:g}")
            lines.append(f"- **{m['title']}** ({cost}): {m['hint']}")
        lines.append("")
    lines += [f"| | {T['check']} | {T['points']} |", "|---|---|---:|"]
    for t in data.get("tests", []):
        if "advisory" in (t.get("tags") or []):
            continue
        mark = "✅" if t.get("status") == "passed" else "❌"
        name = t.get("name", "").replace("|", "\\|")
        lines.append(f"| {mark} | {name} | {t.get('score', 0):g} / {t.get('max_score', 0):g} |")
    lines += ["", f"_{T['training']}_: " + _training_line(ex, T) if ex.get("training") else ""]
    return "\n".join(lines).rstrip() + "\n"


def _training_line(ex, T) -> str:
    runs = ex["training"].get("runs", {})
    acc = lambda k: (f"{runs[k]['test_accuracy']:.2%}" if runs.get(k, {}).get("test_accuracy") is not None  # noqa: E731
                     else "—")
    return f"{T['no_bn']} {acc('no_bn')} · {T['reference_bn']} {acc('reference_bn')} · {T['student_bn']} {acc('student_bn')}"


def classroom(data: dict) -> dict:
    """The payload of GitHub Classroom's grading reporter: its points are the sum of the tests' scores."""
    tests = [{"name": t.get("name", ""), "status": "pass" if t.get("status") == "passed" else "fail",
              "score": t.get("score", 0), "max_score": t.get("max_score", 0),
              "message": (t.get("output") or "")[:2000]}
             for t in data.get("tests", []) if "advisory" not in (t.get("tags") or [])]
    mx = data.get("extra_data", {}).get("max_score", sum(t["max_score"] for t in tests))
    status = "pass" if tests and all(t["status"] == "pass" for t in tests) else "fail"
    return {"version": 1, "status": status, "max_score": mx, "tests": tests}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader.output.github",
                                description="Job summary, annotations and GitHub Classroom points from results.json")
    p.add_argument("results")
    p.add_argument("--file", required=True, help="the submission, as a path in the repository")
    p.add_argument("--lang", choices=("en", "zh"), default="en")
    a = p.parse_args(argv)
    try:
        data = json.loads(Path(a.results).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        # bn-grade did not get as far as results.json (exit 2 or 3): say so where students look
        print(f"::error title=bn-grade::no results ({a.results}: {e.__class__.__name__}); see the Grade step's log")
        data = {"score": 0, "tests": [], "extra_data": {"max_score": 0, "reason": "no results"}}
    try:
        source = Path(a.file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        source = ""
    for line in annotations(data, source, a.file, a.lang):
        print(line)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write(summary(data, a.lang))
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        payload = base64.b64encode(json.dumps(classroom(data), ensure_ascii=False).encode("utf-8")).decode("ascii")
        with open(output, "a", encoding="utf-8") as f:
            f.write(f"result={payload}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
