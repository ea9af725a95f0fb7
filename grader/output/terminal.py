"""The terminal table: checks, points, hints and the total, in the chosen language (parent
process). Colour only on a tty."""
import os
import sys

from grader.output.i18n import reason as reason_text, skipped, t as word
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
    out = [c("1", f"{word('grader_head', lang)} — {os.path.basename(r.submission)}")]
    if r.reason:
        out.append(c("31", f"{word(r.status.value, lang)}: ") + reason_text(r.status.value, r.reason, lang))
    out.extend(c("2", f"{word('note_lc', lang)}: {n}") for n in r.notes)
    if r.needs_review:
        # one line: the evidence is in results.json and the report
        where = "; ".join(f"{e['code']}: {word('review_lines', lang)} "
                          + ", ".join(str(ev["line"]) for ev in e["evidence"][:4])
                          + (", ..." if len(e["evidence"]) > 4 else "") for e in r.needs_review)
        out.append(c("1;35", f"{word('needs_review', lang)}: ") + f"{r.needs_review[0]['file']}: {where}")
    width = max((len(s.outcome.check_id) for s in r.checks), default=10)
    for s in r.checks:
        if s.advisory:
            mark = c("33", word("NOTE", lang)) if not s.outcome.passed else c("2", word("OK", lang))
        else:
            mark = c("32", word("PASS", lang)) if s.passed else c("31", word("FAIL", lang))
        pts = "" if s.advisory else f"{s.score:g}/{s.max_score:g}"
        out.append(f"{mark}  {s.outcome.check_id:<{width}}  {pts:>7}  {s.title[lang]}")
        if not s.passed or s.outcome.notes or (s.advisory and not s.outcome.passed):
            if s.passed and not s.outcome.notes:
                continue
            text = check_text(s, lang) if not s.passed or s.advisory else "\n".join(
                f"{word('note_lc', lang)}: {n}" for n in s.outcome.notes)
            for line in text.splitlines():
                out.append(" " * (width + 17) + line)
    for what, why in r.not_run:
        out.append(c("2", f"  --  {what:<{width}}  {word('not_run_lc', lang)}: {skipped(why, lang)}"))
    if r.training:
        t = r.training
        runs = t["runs"]
        acc = {k: (f"{v['test_accuracy']:.2%}" if v.get("test_accuracy") is not None else "—") for k, v in runs.items()}
        cached = word("term_cached", lang) if runs.get("reference_bn", {}).get("cached") else ""
        out.append(word("term_training", lang).format(epochs=t["epochs"], device=t["device"],
                                                      n=t["dataset"]["n_train"], cached=cached))
        out.append(word("term_acc", lang).format(no=acc.get("no_bn", "—"), ref=acc.get("reference_bn", "—"),
                                                 you=acc.get("student_bn", "—")))
    facts = word("term_facts", lang).format(seconds=r.seconds, seed=r.facts.seed, torch=r.facts.torch_version,
                                            device=r.facts.device, rubric=r.facts.rubric_hash[:12])
    out.append(c("1", f"{word('total', lang)}: {r.score:g} / {r.max_score:g}") + f"   ({facts})")
    if show_output and r.student_output.strip():
        lines = r.student_output.rstrip().splitlines()
        out.append(c("2", word("term_printed", lang).format(n=len(lines))))
        out.extend("  | " + line for line in lines[-10:])
    return "\n".join(out)
