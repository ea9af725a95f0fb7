"""The terminal table: checks, points, hints and the total (parent process). Colour only on a tty."""
import os
import sys

from grader.output.text import check_text
from grader.results import GradeResult


def _colour(enabled):
    def paint(code, text):
        return f"\033[{code}m{text}\033[0m" if enabled else text
    return paint


def render(r: GradeResult, lang: str = "en", colour: bool | None = None, show_output: bool = True) -> str:
    if colour is None:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    c = _colour(colour)
    out = [c("1", f"BatchNorm grader — {os.path.basename(r.submission)}")]
    if r.reason:
        out.append(c("31", f"{r.status.value}: ") + r.reason)
    out.extend(c("2", f"note: {n}") for n in r.notes)
    width = max((len(s.outcome.check_id) for s in r.checks), default=10)
    for s in r.checks:
        if s.advisory:
            mark = c("33", "note") if not s.outcome.passed else c("2", " ok ")
        else:
            mark = c("32", "PASS") if s.passed else c("31", "FAIL")
        pts = "" if s.advisory else f"{s.score:g}/{s.max_score:g}"
        out.append(f"{mark}  {s.outcome.check_id:<{width}}  {pts:>7}  {s.title[lang]}")
        if not s.passed or s.outcome.notes or (s.advisory and not s.outcome.passed):
            if s.passed and not s.outcome.notes:
                continue
            text = check_text(s, lang) if not s.passed or s.advisory else "\n".join(f"note: {n}" for n in s.outcome.notes)
            for line in text.splitlines():
                out.append(" " * (width + 17) + line)
    for what, why in r.not_run:
        out.append(c("2", f"  --  {what:<{width}}  not run: {why}"))
    if r.training:
        t = r.training
        runs = t["runs"]
        acc = {k: (f"{v['test_accuracy']:.2%}" if v.get("test_accuracy") is not None else "—") for k, v in runs.items()}
        cached = " (baselines cached)" if runs.get("reference_bn", {}).get("cached") else ""
        out.append(f"Training: LeNet-5, {t['epochs']} epochs on {t['device']}, {t['dataset']['n_train']} training "
                   f"images{cached}")
        out.append(f"  test accuracy: no BN {acc.get('no_bn', '—')}, reference BN {acc.get('reference_bn', '—')}, "
                   f"your BN {acc.get('student_bn', '—')}   (slides, full training: 74.33% / 78.26%)")
    out.append(c("1", f"Total: {r.score:g} / {r.max_score:g}") + f"   ({r.seconds:.1f} s, seed {r.facts.seed}, "
               f"torch {r.facts.torch_version}, {r.facts.device}, rubric {r.facts.rubric_hash[:12]})")
    if show_output and r.student_output.strip():
        lines = r.student_output.rstrip().splitlines()
        out.append(c("2", f"Your code printed ({len(lines)} lines; last 10 shown):"))
        out.extend("  | " + line for line in lines[-10:])
    return "\n".join(out)
