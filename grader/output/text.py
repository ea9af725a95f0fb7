"""Student-facing text of one scored check, shared by the terminal and results.json (parent
process). Labels in the chosen language; a mistake's hint and a note's suggestion are labelled
apart, and the measured detail stays in English (marked so in Chinese)."""
from grader.output.i18n import t as word
from grader.results import ScoredCheck


def check_text(s: ScoredCheck, lang: str = "en") -> str:
    o = s.outcome
    if s.visibility == "hidden":
        return word("passed" if s.passed else "failed", lang)
    lines = []
    if o.message:
        lines.append(word("term_details", lang) + o.message)
    if s.zeroed:
        lines.append(s.zeroed)
    if o.expected or o.got:
        if o.expected:
            lines.append(f"{word('expected', lang)}: {o.expected}")
        if o.got:
            lines.append(f"{word('got', lang)}: {o.got}")
    for d in o.diagnoses or ([o.diagnosis] if o.diagnosis is not None else []):
        label = word("finding_lc" if s.advisory else "likely_lc", lang)
        lines.append(f"{label}: {d.title[lang]}")
        lines.append(f"{word('suggestion_lc' if s.advisory else 'hint_lc', lang)}: {d.hint[lang]}")
    for n in o.notes:
        lines.append(f"{word('note_lc', lang)}: {n}")
    return "\n".join(lines)


def maximum_text(maximum: dict, lang: str = "en", same: bool = True) -> str:
    """The maximum and where it comes from, one sentence (the rule: grader/scoring.py). Every output
    states it with this: terminal, report, results.json's output."""
    if not maximum:
        return ""
    left = maximum.get("left_out") or []
    fmt = lambda x: f"{x:g}"  # noqa: E731
    if not left:
        text = word("max_all", lang).format(points=fmt(maximum["points"]))
    else:
        parts = []
        # the training stage is one switch: one entry for all its checks
        train = [x for x in left if x["kind"] == "no_train"]
        if train:
            parts.append(word("max_kind_no_train", lang).format(points=fmt(sum(x["points"] for x in train))))
        parts += [word(f"max_kind_{x['kind']}", lang).format(check=x["check"], points=fmt(x["points"]))
                  for x in left if x["kind"] != "no_train"]
        text = word("max_less", lang).format(points=fmt(maximum["points"]), rubric=fmt(maximum["rubric_points"]),
                                             less=fmt(sum(x["points"] for x in left)),
                                             what=("；" if lang == "zh" else "; ").join(parts))
    return text + ("" if lang == "zh" else " ") + word("max_same", lang) if same else text
