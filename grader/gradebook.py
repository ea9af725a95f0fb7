"""The class view, rebuilt from OUT alone (parent process): OUT/gradebook.csv and
OUT/summary.html.

It reads every OUT/<id>/results.json (plain JSON this grader wrote; nothing is unpickled) and
OUT/<id>/submission.py, so N shards writing into one OUT, or a resumed run, end with the same
gradebook as one run over the whole class. Similar submissions are flagged here, across the
whole class; a flag never changes a score. Submissions whose source scan needs review
(checks/static.py) get the `needs_review` flag and their evidence at the top of the summary.
A rebuild never hides a result it cannot read and never replaces a gradebook with one that
lists fewer submissions unless forced: OUT is often a folder shared by several instructors.
"""
from __future__ import annotations

import collections
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from grader import similarity
from grader.errors import UsageError
from grader.intake import safe_id
from grader.checks.static import NEEDS_REVIEW, review_flags
from grader.output.charts import STYLES
from grader.output.files import write_atomic
from grader.output.html import environment
from grader.output.i18n import TEXT

TEMPLATE = Path(__file__).resolve().parent.parent / "student_template" / "batchnorm.py"


COLUMNS = ["id", "name", "email", "score", "max_score", "percent", "status", "flags"]
MISSING = "missing"  # on the roster, no submission graded


class RosterError(UsageError):
    """A roster that cannot be read: one line naming the file (and row) and the problem."""


@dataclass
class Student:
    id: str
    name: str = ""
    email: str = ""


def load_roster(path) -> list[Student]:
    """roster.csv: a header with `id` (and optional `name`, `email`; any case, extra columns
    ignored), one student a row. UTF-8 with or without a BOM, as Excel and the LMS exports write it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"{path}: no such roster file") from None
    except OSError as e:
        raise RosterError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise RosterError(f"{path}: not UTF-8 (byte {e.start}); save it as 'CSV UTF-8'") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise RosterError(f"{path}: not a CSV file: {e}") from None
    if not rows:
        raise RosterError(f"{path}: empty roster (expected a header with an 'id' column)")
    header = [h.strip().lower() for h in rows[0]]
    if "id" not in header:
        raise RosterError(f"{path}: line 1: no 'id' column (the header has: {', '.join(rows[0]) or 'nothing'})")
    col = {k: header.index(k) for k in ("id", "name", "email") if k in header}
    students, seen = [], {}
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        get = lambda k: row[col[k]].strip() if k in col and col[k] < len(row) else ""  # noqa: E731
        sid = get("id")
        if not sid:
            raise RosterError(f"{path}: line {n}: empty id")
        if sid.casefold() in seen:
            raise RosterError(f"{path}: line {n}: id '{sid}' already on line {seen[sid.casefold()]}")
        seen[sid.casefold()] = n
        students.append(Student(sid, get("name"), get("email")))
    return students


def _match(roster: list[Student], ids: list[str]) -> dict:
    """{submission id: Student}. A submission is named by whatever the course collected it under
    (a student id, an e-mail, a GitHub Classroom login); matched, case-insensitively, by the
    roster's id, then e-mail, then the e-mail's user part."""
    keys = {}
    for st in roster:
        for key in (st.id, st.email, st.email.split("@")[0] if "@" in st.email else ""):
            if key:
                keys.setdefault(safe_id(key).casefold(), st)
    return {sid: keys[sid.casefold()] for sid in ids if sid.casefold() in keys}


class GradebookError(UsageError):
    """A gradebook that would lose students: one line naming what and how to proceed (exit 2)."""


def collect(out: Path, problems: list | None = None) -> list[dict]:
    """Every OUT/<id>/results.json as a dict; each one that exists but cannot be read (another
    user's 0600 file, a damaged file) goes into problems as 'path: why' rather than vanishing."""
    rows = []
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        f = d / "results.json"
        if not f.exists():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "score" not in data:
                raise ValueError("not a results.json of this grader")
        except OSError as e:
            if problems is not None:
                problems.append(f"{f}: {e.strerror}")
            continue
        except ValueError as e:
            if problems is not None:
                problems.append(f"{f}: {str(e).splitlines()[0][:80]}")
            continue
        data["_student"] = d.name
        src = d / "submission.py"
        try:
            data["_source"] = src.read_text(encoding="utf-8", errors="replace") if src.exists() else ""
        except OSError:
            data["_source"] = ""  # costs the similarity check this student, not their row
        rows.append(data)
    return rows


def students_in(path: Path) -> int | None:
    """How many submissions (rows not `missing`) an existing gradebook.csv lists; None without one."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise GradebookError(f"{path}: cannot read the existing gradebook ({e.strerror}); it was left alone") from None
    except UnicodeDecodeError:
        return None  # not ours: nothing to protect
    return sum(1 for r in csv.DictReader(io.StringIO(text)) if r.get("status") not in (MISSING, None))


def _review(ex, lang="en"):
    """The entries of extra_data.review, shape-checked (the file is JSON on disk), messages in lang."""
    out = []
    for e in ex.get("review") or []:
        if not isinstance(e, dict) or not isinstance(e.get("evidence"), list):
            continue
        msg = e.get("message")
        out.append({"code": str(e.get("code", "")), "severity": str(e.get("severity", "")),
                    "file": str(e.get("file", "")), "similarity": e.get("similarity"),
                    "message": str(msg.get(lang, msg.get("en", ""))) if isinstance(msg, dict) else str(msg or ""),
                    "evidence": [{"line": ev.get("line"), "text": str(ev.get("text", ""))}
                                 for ev in e["evidence"] if isinstance(ev, dict)]})
    return out


def _flags(ex, similar):
    # needs_review comes from the review itself as well as from the flags the grader wrote, so
    # the column cannot miss a flagged student
    flags = list(ex.get("flags", []))
    flags += [f for f in review_flags(_review(ex)) if f not in flags]
    return flags + similar


def _check_columns(rows):
    order = []
    for r in rows:
        for t in r.get("tests", []):
            cid = t["name"].split(":", 1)[0]
            if cid not in order and not (t.get("tags") and "advisory" in t["tags"]):
                order.append(cid)
    return order


def _gradebook_rows(rows, cols, similar, roster):
    """The CSV's rows: the roster's students in its order (the missing ones too), then any
    submission nobody on the roster matches, flagged `not_on_roster`."""
    by_id = {r["_student"]: r for r in rows}
    matched = _match(roster, list(by_id)) if roster else {}
    owner = {}
    for sid, st in matched.items():
        owner.setdefault(st.id, []).append(sid)
    table = []

    def line(st, r, extra_flags=()):
        if r is None:
            return [st.id, st.name, st.email, "", "", "", MISSING, ""] + [""] * len(cols)
        ex = r.get("extra_data", {})
        checks = ex.get("checks", {})
        mx = ex.get("max_score", 0) or 0
        flags = _flags(ex, similar[r["_student"]]) + list(extra_flags)
        return ([st.id, st.name, st.email, f"{r['score']:g}", f"{mx:g}",
                 f"{100 * r['score'] / mx:.1f}" if mx else "", ex.get("status", ""), ";".join(flags)]
                + [f"{checks[c]['score']:g}" if c in checks and checks[c].get("score") is not None else ""
                   for c in cols])

    for st in roster or []:
        subs = owner.get(st.id, [])
        if not subs:
            table.append(line(st, None))
        for sid in sorted(subs):
            # two submissions for one student: both rows, flagged, so the instructor picks
            table.append(line(st, by_id[sid], [f"duplicate_of:{st.id}"] if len(subs) > 1 else []))
    for sid in sorted(by_id):
        if sid not in matched:
            table.append(line(Student(sid), by_id[sid], ["not_on_roster"] if roster else []))
    return table


def rebuild(out: Path, threshold: float = 0.8, lang: str = "en", roster: list[Student] | None = None,
            force: bool = False):
    """(rows, matches); writes gradebook.csv and summary.html. roster: load_roster()'s students;
    the gradebook then lists them by id, name and e-mail, missing ones included. Raises
    GradebookError, writing nothing, when a result file cannot be read or when the new gradebook
    would list fewer submissions than the one it replaces (unless force)."""
    out = Path(out)
    problems = []
    rows = collect(out, problems)
    if problems:
        # a gradebook silently without them is how a colleague's rebuild lost a class's results
        raise GradebookError(f"{out}: cannot read {len(problems)} result file(s), so the gradebook was not rebuilt: "
                             + "; ".join(problems)
                             + " (fix their permissions, e.g. chmod g+r, or move damaged ones away to regrade them)")
    had = students_in(out / "gradebook.csv")
    if had is not None and len(rows) < had and not force:
        raise GradebookError(f"{out / 'gradebook.csv'} lists {had} students and {out} now has results for only "
                             f"{len(rows)}; it was left alone (pass --force to overwrite it with fewer)")
    template = TEMPLATE.read_text() if TEMPLATE.exists() else None
    sources = {r["_student"]: r["_source"] for r in rows if r["_source"]}
    matches = similarity.similar_pairs(sources, template=template, threshold=threshold) if len(sources) > 1 else []
    similar = collections.defaultdict(list)
    for m in matches:
        similar[m.a].append(f"similar:{m.b}({m.score:.2f})")
        similar[m.b].append(f"similar:{m.a}({m.score:.2f})")
    cols = _check_columns(rows)
    table = _gradebook_rows(rows, cols, similar, roster)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS + cols)
    w.writerows(table)
    # the BOM: Excel (Chinese Windows above all) reads a CSV without one in the local code page,
    # and 王小明 turns to mojibake; LMS importers and csv readers with utf-8-sig skip it
    write_atomic(out / "gradebook.csv", "\ufeff" + buf.getvalue())
    missing = [t[:3] for t in table if t[6] == MISSING]
    write_atomic(out / "summary.html", _summary(rows, cols, matches, similar, sources, lang, missing))
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


def _titles(rows, lang):
    # the rubric's titles in lang, as results.json carries them (extra_data.checks[id].title);
    # an older results.json has only the tests' "id: title" in the language it was graded in
    titles = {}
    for r in rows:
        for cid, c in r.get("extra_data", {}).get("checks", {}).items():
            t = c.get("title")
            if isinstance(t, dict) and t.get(lang):
                titles.setdefault(cid, str(t[lang]))
        for t in r.get("tests", []):
            cid, _, title = t.get("name", "").partition(": ")
            titles.setdefault(cid, title or cid)
    return titles


def _summary(rows, cols, matches, similar, sources, lang, missing=()):
    env = environment()
    T = {k: v[lang] for k, v in TEXT.items()}
    students = []
    diag = collections.Counter()
    passes = {c: [0, 0] for c in cols}
    percents = []
    review = []  # students whose source scan needs an instructor's look, with the evidence
    unloaded = []  # could not be loaded: no verdict on any check, so left out of the pass rates
    maxima = collections.Counter()
    for r in rows:
        ex = r.get("extra_data", {})
        mx = ex.get("max_score", 0) or 0
        maxima[mx] += 1
        pct = 100 * r["score"] / mx if mx else 0.0
        percents.append(pct)
        flags = _flags(ex, similar[r["_student"]])
        entries = [e for e in _review(ex, lang) if e["severity"] == NEEDS_REVIEW]
        if entries:
            review.append({"id": r["_student"], "entries": entries})
        status = ex.get("status", "")
        if status != "graded":
            unloaded.append(r["_student"])
        else:
            mistakes = set()  # per student: one student with one mistake counts once, however many checks it broke
            for cid, c in ex.get("checks", {}).items():
                if cid in passes:
                    passes[cid][1] += 1
                    passes[cid][0] += bool(c.get("passed"))
                if not c.get("passed") and not c.get("advisory"):
                    mistakes.update(c.get("diagnoses") or ([c["diagnosis"]] if c.get("diagnosis") else []))
            diag.update(mistakes)
        students.append({"id": r["_student"], "score": f"{r['score']:g}", "max": f"{mx:g}", "pct": f"{pct:.0f}%",
                         "status": status, "status_text": T.get(status, status), "flags": flags,
                         "reason": ex.get("reason", "")})
    from grader.checks.mistakes import CATALOGUE
    diagnoses = [{"code": code, "title": CATALOGUE[code].title[lang] if code in CATALOGUE else code, "n": n}
                 for code, n in diag.most_common(10)]
    titles = _titles(rows, lang)
    rates = [{"id": c, "title": titles.get(c, c), "passed": p, "total": t, "pct": (100 * p / t) if t else 0.0}
             for c, (p, t) in passes.items()]
    pairs = [{"a": m.a, "b": m.b, "score": f"{m.score:.2f}", "explain": similarity.explain(m, sources)}
             for m in matches]
    graded = len(rows) - len(unloaded)
    return env.get_template("summary.html.j2").render(
        lang=lang, T=T, students=students, histogram=_histogram(percents), rates=rates, diagnoses=diagnoses,
        pairs=pairs, review=review, flagged=[s for s in students if s["flags"] or s["status"] != "graded"],
        mean=f"{sum(percents) / len(percents):.1f}%" if percents else "—", n=len(rows), graded=graded,
        unloaded=unloaded, missing=list(missing), maxima=sorted(maxima.items()))
