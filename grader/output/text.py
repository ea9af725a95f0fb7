"""Student-facing text of one scored check, shared by the terminal and results.json."""
from grader.results import ScoredCheck


def check_text(s: ScoredCheck, lang: str = "en") -> str:
    o = s.outcome
    if s.visibility == "hidden":
        return "passed" if s.passed else "failed"
    lines = []
    if o.message:
        lines.append(o.message)
    if s.zeroed:
        lines.append(s.zeroed)
    if o.expected or o.got:
        if o.expected:
            lines.append(f"expected: {o.expected}")
        if o.got:
            lines.append(f"got:      {o.got}")
    if o.diagnosis is not None:
        label = "可能的错误" if lang == "zh" else ("finding" if s.advisory else "likely mistake")
        lines.append(f"{label}: {o.diagnosis.title[lang]}")
        lines.append(("提示" if lang == "zh" else "hint") + f": {o.diagnosis.hint[lang]}")
    for n in o.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)
