"""The self-contained HTML report of one graded submission (parent process).

One file: styles inline, charts as inline SVG, a Content-Security-Policy that forbids every
fetch, so it opens from disk, prints, and requests nothing. Rendered with Jinja2 autoescaping:
whatever a submission printed or raised reaches the page as text, never as markup. The
integrity review (checks/static.py) opens the page, above the checks, for the instructor.

The fix comes first: right under the score, one card per likely mistake (each mistake once,
with the points it costs, its hint and links to the checks it broke), then the checks and
their measured details. No path of the grading machine appears: the rubric is shown by its
name and hash.
"""
import datetime
import os

from markupsafe import Markup

from grader.output import charts, html, i18n
from grader.output.files import write_atomic
from grader.output.i18n import TEXT, skipped
from grader.output.text import maximum_text
from grader.results import GradeResult

# the slides' test accuracies after full training; the reference BN was trained with the
# moving-average decay 0.9 and 0.99 (no BN has no running statistics, so one figure)
SLIDES = {"no_bn": ("74.33%", None), "reference_bn": ("78.26%", "78.16%"), "student_bn": ("—", "—")}
RUNS = ("no_bn", "reference_bn", "student_bn")


def _fmt(x):
    return f"{x:g}"


def _env():
    env = html.environment()
    if "detail_template" not in env.globals:  # compiled once, like the templates
        env.globals["detail_template"] = env.from_string(_DETAIL)
    return env


def _detail(s, lang, env):
    o = s.outcome
    T = {k: v[lang] for k, v in TEXT.items()}
    tpl = env.globals["detail_template"]
    return Markup(tpl.render(o=o, s=s, lang=lang, T=T))


# the measured detail of one failed check; its mistake's hint is in the mistake's card, linked
_DETAIL = (
        "{% if not s.advisory %}{% for d in (o.diagnoses or ([o.diagnosis] if o.diagnosis else [])) %}"
        "<p class=\"diag\"><strong>{{ T.likely }}:</strong> <a href=\"#mistake-{{ d.code }}\">{{ d.title[lang] }}</a>"
        "</p>{% endfor %}{% else %}{% for d in (o.diagnoses or ([o.diagnosis] if o.diagnosis else [])) %}"
        "<div class=\"diag\"><strong>{{ T.finding }}:</strong> {{ d.title[lang] }}<br><strong>{{ T.suggestion }}:"
        "</strong> {{ d.hint[lang] }}</div>{% endfor %}{% endif %}"
        # label | value rows, not five columns: it reads the same on a phone and on paper
        "{% if o.metrics %}<table class=\"metrics\">"
        "<tr><th>{{ T.max_abs }}</th><td class=\"num\">{{ '%.3g'|format(o.metrics.max_abs) }}</td></tr>"
        "<tr><th>{{ T.max_rel }}</th><td class=\"num\">{{ '%.3g'|format(o.metrics.max_rel) }}</td></tr>"
        "<tr><th>{{ T.worst_channel }}</th><td class=\"num\">"
        "{{ o.metrics.worst_channel if o.metrics.worst_channel is not none else '—' }}</td></tr>"
        "<tr><th>{{ T.mismatched }}</th><td class=\"num\">{{ o.metrics.mismatched }} / {{ o.metrics.total }}</td></tr>"
        "<tr><th>{{ T.tolerance }}</th><td class=\"num\">|Δ| ≤ {{ o.metrics.atol }} + {{ o.metrics.rtol }}·|{{ T.expected }}|"
        "</td></tr></table>{% endif %}"
        "{% if o.expected or o.got %}<table class=\"eg\">"
        "{% if o.expected %}<tr><th>{{ T.expected }}</th><td><pre>{{ o.expected }}</pre></td></tr>{% endif %}"
        "{% if o.got %}<tr><th>{{ T.got }}</th><td><pre>{{ o.got }}</pre></td></tr>{% endif %}</table>{% endif %}"
        "{% if o.message %}<p class=\"message\"><span class=\"sub\">{{ T.details if lang == 'zh' else '' }}</span> "
        "{{ o.message }}</p>{% endif %}{% if s.zeroed %}<p>{{ s.zeroed }}</p>{% endif %}"
        "{% for n in o.notes %}<p class=\"sub\"><strong>{{ T.note }}:</strong> {{ n }}</p>{% endfor %}")


def _fmt_points(x):
    return f"{x:g}"


def mistakes(r: GradeResult, lang: str):
    """(cards, other): one card per likely mistake, costliest first: its title, hint, the points
    it costs and the checks it broke. A check's lost points count once, for its first-named
    mistake, so the cards' costs add up to the points lost. other: failed visible checks with no
    recognised mistake. Hidden checks stay out: students see only that they failed."""
    cards, other = {}, []
    for s in r.checks:
        if s.advisory or s.passed or s.visibility == "hidden":
            continue
        o = s.outcome
        found = o.diagnoses or ([o.diagnosis] if o.diagnosis is not None else [])
        lost = s.max_score - s.score
        if not found:
            other.append({"id": o.check_id, "title": s.title[lang], "lost": _fmt_points(lost)})
            continue
        for k, d in enumerate(found):
            card = cards.setdefault(d.code, {"code": d.code, "title": d.title[lang], "hint": d.hint[lang],
                                             "points": 0.0, "checks": []})
            card["points"] += lost if k == 0 else 0.0
            card["checks"].append({"id": o.check_id, "title": s.title[lang],
                                   "lost": _fmt_points(lost) if k == 0 else ""})
    ordered = sorted(cards.values(), key=lambda c: (-c["points"], c["code"]))
    for c in ordered:
        c["points_text"] = _fmt_points(c["points"])
    return ordered, other


def _training(r: GradeResult, lang):
    t = r.training
    if not t:
        return None
    T = {k: v[lang] for k, v in TEXT.items()}
    runs = t["runs"]
    names = {k: T[k] for k in RUNS}
    train = [(names[k], runs[k]["train_loss"]) for k in RUNS if k in runs]
    val = [(names[k], runs[k]["val_loss"]) for k in RUNS if k in runs]
    yr = charts.shared_range(*[v for _, v in train], *[v for _, v in val])
    rows = []
    for k in RUNS:
        if k not in runs:
            continue
        acc = runs[k].get("test_accuracy")
        s09, s099 = SLIDES[k]
        rows.append({"name": names[k], "acc": f"{acc:.2%}" if acc is not None else "—", "slides_09": s09,
                     "slides_099": s099, "seconds": f"{runs[k].get('seconds', 0):.0f}", "cached": runs[k].get("cached")})
    ds = t["dataset"]
    note = T["training_note"].format(epochs=t["epochs"], device=t["device"], n_train=ds["n_train"],
                                     n_val=ds["n_val"], n_test=ds["n_test"])
    packed = t.get("baselines_from")
    if packed:
        note += T["pack_baselines"].format(device=packed["device"],
                                           data="" if packed.get("same_data", True) else T["pack_other_data"])
    mine = runs.get("student_bn", {}).get("test_accuracy")
    ref = runs.get("reference_bn", {}).get("test_accuracy")
    # the question every student whose run looks fine asks: said where it applies, in bold
    beat = mine is not None and ref is not None and mine >= ref - 0.03 and r.score < r.max_score
    return {"train_chart": charts.line_chart(T["train_loss"], train, yr, T["epoch"], T["loss"]),
            "val_chart": charts.line_chart(T["val_loss"], val, yr, T["epoch"], T["loss"]),
            "rows": rows, "note": note, "beat": beat}


def render(r: GradeResult, lang: str = "en", now: datetime.datetime | None = None) -> str:
    env = _env()
    T = {k: v[lang] for k, v in TEXT.items()}
    graded = [s for s in r.checks if not s.advisory]
    advisory = [s for s in r.checks if s.advisory]
    percent = f"{100 * r.score / r.max_score:.0f}%" if r.max_score else "—"
    cards, other = mistakes(r, lang)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return env.get_template("report.html.j2").render(
        r=r, lang=lang, T=T, name=os.path.basename(r.submission), graded=graded, advisory=advisory,
        percent=percent, fmt=_fmt, detail=lambda s: _detail(s, lang, env), training=_training(r, lang),
        graded_at=now.strftime("%Y-%m-%d %H:%M:%S UTC"), skipped=skipped, review_boxes=_review_boxes(r, T),
        mistakes=cards, other=other, reason=i18n.reason(r.status.value, r.reason, lang),
        rubric_name=r.facts.rubric_name or os.path.basename(r.facts.rubric_path),
        maximum=maximum_text(r.maximum, lang))


def _review_boxes(r: GradeResult, T):
    # needs-review first and apart from the informational flags; entries come from JSON-like
    # dicts (checks/static.py), so the optional keys are filled in here, not in the template
    boxes = []
    for severity, heading in (("needs_review", T["needs_review"]), ("info", T["review_info"])):
        entries = [dict(e, similarity=e.get("similarity")) for e in r.review if e.get("severity") == severity]
        if entries:
            boxes.append((severity, entries, heading))
    return boxes


def write(r: GradeResult, path, lang: str = "en") -> None:
    write_atomic(path, render(r, lang))
