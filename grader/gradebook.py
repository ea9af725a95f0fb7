"""The class view, rebuilt from OUT alone (parent process): OUT/gradebook.csv and
OUT/summary.html.

It reads every OUT/<id>/results.json (plain JSON this grader wrote; nothing is unpickled) and
OUT/<id>/submission.py, so N shards writing into one OUT, or a resumed run, end with the same
gradebook as one run over the whole class. Similar submissions are flagged here, across the
whole class; a flag never changes a score.
"""
from __future__ import annotations

import collections
import csv
import io
import json
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from grader import similarity
from grader.output.charts import STYLES
from grader.output.files import write_atomic
from grader.output.i18n import TEXT

TEMPLATE = Path(__file__).resolve().parent.parent / "student_template" / "batchnorm.py"


def collect(out: Path) -> list[dict]:
    rows = []
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        f = d / "results.json"
        if not f.exists():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a damaged file is regraded by the next run (it is not "done" to us either)
        data["_student"] = d.name
        src = d / "submission.py"
        data["_source"] = src.read_text(encoding="utf-8", errors="replace") if src.exists() else ""
        rows.append(data)
    return rows


def _check_columns(rows):
    order = []
    for r in rows:
        for t in r.get("tests", []):
            cid = t["name"].split(":", 1)[0]
            if cid not in order and not (t.get("tags") and "advisory" in t["tags"]):
                order.append(cid)
    return order


def rebuild(out: Path, threshold: float = 0.8, lang: str = "en"):
    """(rows, matches); writes gradebook.csv and summary.html."""
    out = Path(out)
    rows = collect(out)
    template = TEMPLATE.read_text() if TEMPLATE.exists() else None
    sources = {r["_student"]: r["_source"] for r in rows if r["_source"]}
    matches = similarity.similar_pairs(sources, template=template, threshold=threshold) if len(sources) > 1 else []
    similar = collections.defaultdict(list)
    for m in matches:
        similar[m.a].append(f"similar:{m.b}({m.score:.2f})")
        similar[m.b].append(f"similar:{m.a}({m.score:.2f})")
    cols = _check_columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", "score", "max_score", "percent", "status", "flags"] + cols)
    for r in rows:
        ex = r.get("extra_data", {})
        checks = ex.get("checks", {})
        flags = list(ex.get("flags", [])) + similar[r["_student"]]
        mx = ex.get("max_score", 0) or 0
        w.writerow([r["_student"], f"{r['score']:g}", f"{mx:g}", f"{100 * r['score'] / mx:.1f}" if mx else "",
                    ex.get("status", ""), ";".join(flags)]
                   + [f"{checks[c]['score']:g}" if c in checks and checks[c].get("score") is not None else ""
                      for c in cols])
    write_atomic(out / "gradebook.csv", buf.getvalue())
    write_atomic(out / "summary.html", _summary(rows, cols, matches, similar, sources, lang))
    return rows, matches


def _histogram(percents, width=520, height=180):
    bins = [0] * 10
    for p in percents:
        bins[min(int(p // 10), 9)] += 1
    top = max(bins) or 1
    bw = (width - 40) / 10
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="score histogram">']
    for i, n in enumerate(bins):
        h = (height - 40) * n / top
        x = 30 + i * bw
        parts.append(f'<rect class="bar" x="{x + 2:.1f}" y="{height - 22 - h:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" '
                     f'fill="{STYLES[1][0]}"/>')
        parts.append(f'<text x="{x + bw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="tick">{i * 10}</text>')
        if n:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{height - 26 - h:.1f}" text-anchor="middle" class="tick">{n}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _summary(rows, cols, matches, similar, sources, lang):
    env = Environment(loader=FileSystemLoader(str(Path(__file__).resolve().parent / "output" / "templates")),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    students = []
    diag = collections.Counter()
    passes = {c: [0, 0] for c in cols}
    percents = []
    for r in rows:
        ex = r.get("extra_data", {})
        mx = ex.get("max_score", 0) or 0
        pct = 100 * r["score"] / mx if mx else 0.0
        percents.append(pct)
        flags = list(ex.get("flags", [])) + similar[r["_student"]]
        for cid, c in ex.get("checks", {}).items():
            if cid in passes:
                passes[cid][1] += 1
                passes[cid][0] += bool(c.get("passed"))
            if not c.get("passed") and c.get("diagnosis") and not c.get("advisory"):
                diag[c["diagnosis"]] += 1
        students.append({"id": r["_student"], "score": f"{r['score']:g}", "max": f"{mx:g}", "pct": f"{pct:.0f}%",
                         "status": ex.get("status", ""), "flags": flags, "reason": ex.get("reason", "")})
    from grader.checks.mistakes import CATALOGUE
    diagnoses = [{"code": code, "title": CATALOGUE[code].title[lang] if code in CATALOGUE else code, "n": n}
                 for code, n in diag.most_common(10)]
    rates = [{"id": c, "passed": p, "total": t, "pct": (100 * p / t) if t else 0.0} for c, (p, t) in passes.items()]
    pairs = [{"a": m.a, "b": m.b, "score": f"{m.score:.2f}", "explain": similarity.explain(m, sources)}
             for m in matches]
    T = {k: v[lang] for k, v in TEXT.items()}
    return env.get_template("summary.html.j2").render(
        lang=lang, T=T, students=students, histogram=_histogram(percents), rates=rates, diagnoses=diagnoses,
        pairs=pairs, flagged=[s for s in students if s["flags"] or s["status"] != "graded"],
        mean=f"{sum(percents) / len(percents):.1f}%" if percents else "—", n=len(rows))
