"""The self-contained HTML report of one graded submission (parent process).

One file: styles inline, charts as inline SVG, a Content-Security-Policy that forbids every
fetch, so it opens from disk, prints, and requests nothing. Rendered with Jinja2 autoescaping:
whatever a submission printed or raised reaches the page as text, never as markup.
"""
import datetime
import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from grader.output import charts
from grader.output.files import write_atomic
from grader.output.i18n import TEXT, skipped
from grader.results import GradeResult

TEMPLATES = Path(__file__).resolve().parent / "templates"
SLIDES = {"no_bn": "74.33%", "reference_bn": "78.26% (decay 0.9) · 78.16% (0.99)", "student_bn": "—"}
RUNS = ("no_bn", "reference_bn", "student_bn")


def _fmt(x):
    return f"{x:g}"


_ENV = None


def _env():
    # built once: compiling the templates for every student cost ~0.2 s each in a batch
    global _ENV
    if _ENV is None:
        _ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                           trim_blocks=True, lstrip_blocks=True)
        _ENV.globals["detail_template"] = _ENV.from_string(_DETAIL)
    return _ENV


def _detail(s, lang, env):
    o = s.outcome
    T = {k: v[lang] for k, v in TEXT.items()}
    tpl = env.globals["detail_template"]
    label = T["finding"] if s.advisory else T["likely"]
    return Markup(tpl.render(o=o, s=s, lang=lang, T=T, label=label))


_DETAIL = (
        "{% if o.diagnosis %}<div class=\"diag\"><strong>{{ label }}:</strong> {{ o.diagnosis.title[lang] }}"
        "<br><strong>{{ T.hint }}:</strong> {{ o.diagnosis.hint[lang] }}</div>{% endif %}"
        "{% if o.metrics %}<table class=\"metrics\"><tr><th>{{ T.max_abs }}</th><th>{{ T.max_rel }}</th>"
        "<th>{{ T.worst_channel }}</th><th>{{ T.mismatched }}</th><th>{{ T.tolerance }}</th></tr>"
        "<tr><td class=\"num\">{{ '%.3g'|format(o.metrics.max_abs) }}</td>"
        "<td class=\"num\">{{ '%.3g'|format(o.metrics.max_rel) }}</td>"
        "<td class=\"num\">{{ o.metrics.worst_channel if o.metrics.worst_channel is not none else '—' }}</td>"
        "<td class=\"num\">{{ o.metrics.mismatched }} / {{ o.metrics.total }}</td>"
        "<td>|Δ| ≤ {{ o.metrics.atol }} + {{ o.metrics.rtol }}·|{{ T.expected }}|</td></tr></table>{% endif %}"
        "{% if o.expected or o.got %}<table class=\"eg\">"
        "{% if o.expected %}<tr><th>{{ T.expected }}</th><td><pre>{{ o.expected }}</pre></td></tr>{% endif %}"
        "{% if o.got %}<tr><th>{{ T.got }}</th><td><pre>{{ o.got }}</pre></td></tr>{% endif %}</table>{% endif %}"
        "{% if o.message %}<p><span class=\"sub\">{{ T.details if lang == 'zh' else '' }}</span> {{ o.message }}</p>"
        "{% endif %}{% if s.zeroed %}<p>{{ s.zeroed }}</p>{% endif %}"
        "{% for n in o.notes %}<p class=\"sub\">{{ n }}</p>{% endfor %}")


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
        rows.append({"name": names[k], "acc": f"{acc:.2%}" if acc is not None else "—", "slides": SLIDES[k],
                     "seconds": f"{runs[k].get('seconds', 0):.0f}", "cached": runs[k].get("cached")})
    ds = t["dataset"]
    note = T["training_note"].format(epochs=t["epochs"], device=t["device"], n_train=ds["n_train"],
                                     n_val=ds["n_val"], n_test=ds["n_test"])
    return {"train_chart": charts.line_chart(T["train_loss"], train, yr, T["epoch"], T["loss"]),
            "val_chart": charts.line_chart(T["val_loss"], val, yr, T["epoch"], T["loss"]),
            "rows": rows, "note": note}


def render(r: GradeResult, lang: str = "en", now: datetime.datetime | None = None) -> str:
    env = _env()
    T = {k: v[lang] for k, v in TEXT.items()}
    graded = [s for s in r.checks if not s.advisory]
    advisory = [s for s in r.checks if s.advisory]
    percent = f"{100 * r.score / r.max_score:.0f}%" if r.max_score else "—"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return env.get_template("report.html.j2").render(
        r=r, lang=lang, T=T, name=os.path.basename(r.submission), graded=graded, advisory=advisory,
        percent=percent, fmt=_fmt, detail=lambda s: _detail(s, lang, env), training=_training(r, lang),
        graded_at=now.strftime("%Y-%m-%d %H:%M:%S UTC"), skipped=skipped)


def write(r: GradeResult, path, lang: str = "en") -> None:
    write_atomic(path, render(r, lang))
