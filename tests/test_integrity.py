"""Integrity findings the attacker's own process cannot erase: each submission in tests/hostile/
switches off or hides from the run-time detector of built-in normalisation (or copies the
reference); grading it must put a needs-review flag, with the right file and line, into
results.json, the HTML report (seen in headless Chromium), the terminal line, the gradebook and
summary.html. The corpus's submissions, correct or not, get none.

What each hostile file must raise is in its header (`# review: CODE`) and on its lines
(`# <- CODE`), so the expectations live beside the attacks, as the corpus's do."""
import csv
import json
import re
import shutil

import pytest

from conftest import CORPUS, ROOT
from grader.checks.static import review
from grader.output import gradescope, report, terminal

HOSTILE = ROOT / "tests" / "hostile"
ATTACKS = sorted(HOSTILE.glob("*.py"))
# the five ways the run-time detector was switched off (issue 9, item 8), and the copy
EXPECTED_FILES = {"getframe_clear_patterns.py", "pop_mode.py", "decomp_batch_norm.py", "refs_normalize.py",
                  "torchscript_function.py", "copy_of_reference.py"}


def expected(path):
    """(codes from the header, {line: code} from the `# <- CODE` markers)"""
    codes, lines = set(), {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("# review:"):
            codes |= set(line.split(":", 1)[1].split())
        m = re.search(r"# <- (\w+)\s*$", line)
        if m:
            lines[n] = m.group(1)
    return codes, lines


def test_every_attack_of_the_issue_has_a_submission():
    assert {p.name for p in ATTACKS} == EXPECTED_FILES
    for p in ATTACKS:
        codes, _ = expected(p)
        assert codes, f"{p.name} has no '# review:' header"


@pytest.fixture(scope="module")
def graded(quick_rubric, tmp_path_factory):
    """Each hostile file graded once, from a copy in a temporary folder (a machine path that must
    never show), with its results.json and report written as the CLI writes them."""
    from conftest import ZYGOTE
    from grader.grading import grade_file
    root = tmp_path_factory.mktemp("integrity")
    out = {}
    for p in ATTACKS:
        sub = root / "in" / p.stem / p.name
        sub.parent.mkdir(parents=True)
        shutil.copyfile(p, sub)
        r = grade_file(sub, quick_rubric, ZYGOTE)
        gradescope.write_json(r, root / f"{p.stem}.json")
        report.write(r, root / f"{p.stem}.html", "en")
        out[p.name] = (r, json.loads((root / f"{p.stem}.json").read_text()),
                       (root / f"{p.stem}.html").read_text(), str(sub.parent))
    return out


@pytest.mark.parametrize("path", ATTACKS, ids=lambda p: p.stem)
def test_attack_is_flagged_with_its_lines_in_results_json(graded, path):
    r, data, _, machine_dir = graded[path.name]
    codes, lines = expected(path)
    ex = data["extra_data"]
    got = {e["code"]: e for e in ex["review"]}
    assert codes <= set(got), (codes, list(got))
    assert all(got[c]["severity"] == "needs_review" for c in codes)
    assert "needs_review" in ex["flags"]
    for line, code in lines.items():
        ev = {e["line"]: e for e in got[code]["evidence"]}
        assert line in ev, (code, line, sorted(ev))
        assert ev[line]["text"] == path.read_text().splitlines()[line - 1].strip()
    for e in ex["review"]:
        assert e["file"] == path.name
    # the notice a grader sees first in Gradescope's output, and never a path of this machine
    head = data["output"].splitlines()
    assert head[1].startswith("NEEDS REVIEW")
    for line in lines:
        assert f"{path.name}:{line}: " in data["output"]
    assert machine_dir not in json.dumps(ex["review"]) and machine_dir not in data["output"].split("Not run")[0]
    # the terminal's one line
    term = [t for t in terminal.render(r, colour=False).splitlines() if t.startswith("Needs review:")]
    assert len(term) == 1 and all(c in term[0] for c in codes) and machine_dir not in term[0]
    # flags never change a score: the result is what its numbers earn (checked by test_corpus for
    # the corpus), and the review is not a check
    assert not any(s.outcome.check_id.startswith("review") for s in r.checks)


@pytest.mark.parametrize("path", ATTACKS, ids=lambda p: p.stem)
def test_attack_is_flagged_in_the_report(graded, path):
    _, _, html_text, machine_dir = graded[path.name]
    codes, lines = expected(path)
    box = html_text.split('id="needs-review"', 1)
    assert len(box) == 2, "no Needs review box"
    # above the checks, where the instructor sees it at once
    assert html_text.index('id="needs-review"') < html_text.index('class="breakdown"')
    section = box[1].split("</section>", 1)[0]
    for code in codes:
        assert f"({code}" in section
    for line in lines:
        assert f"{path.name}:{line}<" in section
    assert machine_dir not in section


def _red_pixels(png):
    from PIL import Image
    data = Image.open(png).convert("RGB").tobytes()
    # the box's border and heading colour, #a3121b
    return sum(1 for r, g, b in zip(data[0::3], data[1::3], data[2::3]) if abs(r - 0xa3) < 24 and g < 50 and b < 60)


def test_report_box_is_prominent_in_headless_chromium(graded, tmp_path):
    import dataclasses

    from test_report import _browse, _chromium, _Elements, _Recorder
    chromium = _chromium()
    r, _, html_text, _ = graded["getframe_clear_patterns.py"]
    page, control = tmp_path / "report.html", tmp_path / "control.html"
    page.write_text(html_text)
    report.write(dataclasses.replace(r, review=[]), control, "en")  # the same page without the flag
    rec = _Recorder()
    try:
        dom = _browse(chromium, page, tmp_path, rec.port, "--dump-dom").stdout
        shots = []
        for p in (page, control):
            shots.append(tmp_path / f"{p.stem}.png")
            _browse(chromium, p, tmp_path, rec.port, f"--screenshot={shots[-1]}", "--window-size=1000,700",
                    "--hide-scrollbars")
    finally:
        rec.close()
    p = _Elements()
    p.feed(dom)
    assert ("section", {"class": "review", "id": "needs-review"}) in p.tags
    assert "sys._getframe(1)" in dom and "script" not in {t for t, _ in p.tags}
    # the first screen of the page shows the box: its red border is drawn there, and only there
    flagged, plain = _red_pixels(shots[0]), _red_pixels(shots[1])
    assert flagged > 1000 and plain < 200, (flagged, plain)


def test_evidence_from_the_submission_is_escaped(grade, tmp_path):
    from test_report import _Elements
    sub = tmp_path / "evil.py"
    sub.write_text((CORPUS / "correct_var_mean.py").read_text()
                   + '\nimport sys\n_f = sys._getframe(0)  # <script>alert(1)</script><img src=x onerror=alert(2)>\n')
    r = grade(sub)
    assert [e["code"] for e in r.needs_review] == ["introspection"]
    html_text = report.render(r, "zh")
    assert "需要人工复核" in html_text and "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    p = _Elements()
    p.feed(html_text)
    assert not {"script", "img"} & {t for t, _ in p.tags}
    assert not any(k.startswith("on") for _, attrs in p.tags for k in attrs)


def test_gradebook_and_summary_list_who_needs_review(tmp_path):
    from grader.cli import main
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copyfile(HOSTILE / "refs_normalize.py", subs / "mallory.py")
    shutil.copyfile(CORPUS / "correct_textbook.py", subs / "alice.py")
    shutil.copyfile(CORPUS / "correct_rsqrt.py", subs / "bob.py")
    out = tmp_path / "out"
    assert main([str(subs), "--out", str(out), "--no-train", "--quiet", "--jobs", "1"]) == 0
    with open(out / "gradebook.csv", newline="", encoding="utf-8-sig") as f:  # the BOM: docs/batch.md
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert "needs_review" in rows["mallory"]["flags"].split(";")
    assert "needs_review" not in rows["alice"]["flags"] and "needs_review" not in rows["bob"]["flags"]
    assert "textbook_copy" in rows["alice"]["flags"].split(";")  # informational, and allowed
    summary = (out / "summary.html").read_text()
    box = summary.split('id="needs-review"', 1)[1].split("</section>", 1)[0]
    _, lines = expected(HOSTILE / "refs_normalize.py")
    assert 'href="mallory/report.html"' in box and "alice" not in box and "bob" not in box
    for line in lines:
        assert f"<code>mallory.py:{line}</code>" in box
    assert str(tmp_path) not in box
    assert summary.index('id="needs-review"') < summary.index("Score distribution")


# ---------------------------------------------------------------------------- no false positives

@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.py")), ids=lambda p: p.stem)
def test_corpus_needs_no_review(path):
    entries = review(path.read_text(), path.name)
    assert [e for e in entries if e["severity"] == "needs_review"] == []
    # the textbook's code (its header says so) is listed for information, the others not at all
    header = next((line for line in path.read_text().splitlines() if line.startswith("# corpus:")), "")
    textbook = "textbook" in header or "d2l" in header
    assert [e["code"] for e in entries] == (["textbook_copy"] if textbook else [])
    assert all(e["severity"] == "info" for e in entries)


def test_plain_sys_and_gc_are_not_flagged():
    src = (CORPUS / "correct_var_mean.py").read_text() + (
        "\nimport gc\nimport sys\nimport importlib\n"
        "if __name__ == '__main__':\n"
        "    print(sys.version, sys.argv, sys.platform)\n"
        "    gc.collect()\n"
        "    np = importlib.import_module('numpy')\n"
        "    sys.exit(0)\n")
    assert review(src, "sub.py") == []
