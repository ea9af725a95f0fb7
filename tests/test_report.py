"""The HTML report: a golden rendering of a fixed result, escaping of everything a
submission controls, and the page opened in a real headless Chromium that must draw the
charts and request nothing beyond the file."""
import dataclasses
import datetime
import html
import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import CORPUS
from grader.checks.mistakes import CATALOGUE
from grader.output import report
from grader.output.i18n import TEXT
from grader.results import CheckOutcome, GradeResult, Metrics, RunFacts, RunStatus, ScoredCheck

GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
HOSTILE = '<script>alert("x")</script><img src="http://evil.example/x.png" onerror="alert(1)">'


def _title(en, zh):
    return {"en": en, "zh": zh}


def fixed_result(output="print from the student\n", name="sub.py", message_extra=""):
    m = Metrics(max_abs=0.248, max_rel=0.507, worst_channel=4, atol=1e-5, rtol=1.3e-6, mismatched=44, total=210)
    checks = [
        ScoredCheck(CheckOutcome("structure.4d", True, "ok"), _title("Parameters", "参数"), 5, 5, "visible", False),
        ScoredCheck(CheckOutcome("forward.train.4d", False, "train-mode output off" + message_extra, expected="[3.07, 2.23]",
                                 got="[3.18, 2.30]", metrics=m, diagnosis=CATALOGUE["eps_outside_sqrt"]),
                    _title("Training-mode output", "训练模式输出"), 0, 15, "visible", False),
        ScoredCheck(CheckOutcome("running_stats", False, "secret details"), _title("Running stats", "滑动统计量"), 0, 15,
                    "hidden", False),
        ScoredCheck(CheckOutcome("advice.buffers", False, "plain tensors", diagnosis=CATALOGUE["not_buffers"]),
                    _title("Note: buffers", "提示：buffer"), 0, 0, "visible", True),
    ]
    runs = {"no_bn": {"test_accuracy": 0.3229, "train_loss": [2.31, 2.28, 2.1], "val_loss": [2.30, 2.26, 2.07],
                      "seconds": 40.0, "cached": True},
            "reference_bn": {"test_accuracy": 0.5297, "train_loss": [1.8, 1.5, 1.4], "val_loss": [1.96, 1.41, 1.48],
                             "seconds": 68.0, "cached": True},
            "student_bn": {"test_accuracy": 0.5102, "train_loss": [1.85, 1.55, 1.45], "val_loss": [1.9, 1.5, 1.5],
                           "seconds": 70.0, "cached": False}}
    training = {"device": "cpu", "epochs": 3, "threads": 2,
                "dataset": {"kind": "image-folder", "path": "data/cifar10-jpeg", "n_train": 45000, "n_val": 5000,
                            "n_test": 10000, "cache": "x", "cached": True}, "runs": runs}
    facts = RunFacts(seed=1, torch_version="2.x", device="cpu", rubric_path="rubrics/batchnorm.yaml",
                     rubric_hash="ab" * 32, grader_version="0.1.0", python="3.11")
    return GradeResult(submission=name, submission_hash="cd" * 32, status=RunStatus.GRADED, reason="", checks=checks,
                       score=5, max_score=35, facts=facts, seconds=1.25, student_output=output,
                       not_run=[("device.cuda", "no CUDA device here")], flags=[], training=training)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_golden_rendering(lang):
    html_text = report.render(fixed_result(), lang, now=NOW)
    masked = re.sub(r'(<td class="timestamp">)[^<]*', r"\1MASKED", html_text)
    golden = GOLDEN / f"report_{lang}.html"
    if os.environ.get("BN_UPDATE_GOLDEN"):
        golden.write_text(masked, encoding="utf-8")
    assert masked == golden.read_text(encoding="utf-8"), f"rerun with BN_UPDATE_GOLDEN=1 if {golden.name} should change"


def test_hidden_check_shows_only_its_result():
    html_text = report.render(fixed_result(), "en", now=NOW)
    assert "secret details" not in html_text and "hidden check: only the result is shown" in html_text


class _Elements(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_whatever_a_submission_prints_or_raises_is_escaped():
    r = fixed_result(output=HOSTILE, name=f"{HOSTILE}.py", message_extra=HOSTILE)
    html_text = report.render(r, "en", now=NOW)
    p = _Elements()
    p.feed(html_text)
    tags = {t for t, _ in p.tags}
    assert "script" not in tags and "img" not in tags
    assert not any(k.startswith("on") for _, attrs in p.tags for k in attrs)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html_text
    assert "http://evil.example" not in re.sub(r"&[^;]+;", "", html_text).split("student-output")[0].split("<body>")[0]


# ------------------------------------------------------------------------ real browser

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("CI must have Debian's chromium (see .ci/run)")
    pytest.skip("no chromium installed: apt-get install chromium (CI installs it)")


class _Recorder:
    """A proxy that answers nothing but records every connection the browser opens."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                line = conn.recv(2048).split(b"\r\n")[0].decode("latin1")
                # a connection closed before any request line names no destination: Chromium
                # may open a spare connection to its proxy and close it unused (seen 2026-11-29)
                if line:
                    self.requests.append(line)
            except OSError:
                self.requests.append("?")  # opened and kept silent: counted, as a fetch could be
            conn.close()

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


# Chromium's own background traffic (clock, updates, accounts), not the page's
BROWSER_OWN = ("clients2.google.com", "update.googleapis.com", "accounts.google.com", "www.google.com",
               "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com")


def _host(request_line):
    target = request_line.split(" ")[1] if " " in request_line else request_line
    target = target.split("://", 1)[-1]
    return target.split("/", 1)[0].rsplit(":", 1)[0]


def _browse(chromium, page: Path, tmp_path, proxy_port, *extra):
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--disable-features=NetworkTimeServiceQuerying,OptimizationHints",
           "--user-data-dir=" + str(tmp_path / "profile"),
           f"--proxy-server=http://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>", *extra,
           page.as_uri()]
    return subprocess.run(cmd, capture_output=True, timeout=90, text=True)


def test_report_in_headless_chromium_draws_charts_and_requests_nothing(tmp_path):
    chromium = _chromium()
    page = tmp_path / "report.html"
    report.write(fixed_result(output=HOSTILE), page, "zh")
    rec = _Recorder()
    try:
        # the control: the recorder does see a page that fetches something
        control = tmp_path / "control.html"
        control.write_text('<img src="http://example.invalid/pixel.png">')
        _browse(chromium, control, tmp_path, rec.port, "--dump-dom")
        assert any("example.invalid" in r for r in rec.requests), rec.requests
        rec.requests.clear()
        dom = _browse(chromium, page, tmp_path, rec.port, "--dump-dom").stdout
        shot = tmp_path / "shot.png"
        _browse(chromium, page, tmp_path, rec.port, f"--screenshot={shot}", "--window-size=1000,2600",
                "--hide-scrollbars")
    finally:
        rec.close()
    assert [r for r in rec.requests if _host(r) not in BROWSER_OWN] == []
    p = _Elements()
    p.feed(dom)
    charts = [a for t, a in p.tags if t == "svg" and "chart" in a.get("class", "")]
    lines = [a for t, a in p.tags if t == "polyline"]
    assert len(charts) == 2 and len(lines) == 6  # two charts, three runs each
    assert all(len(a["points"].split()) == 3 for a in lines)  # one point per epoch
    assert "script" not in {t for t, _ in p.tags}
    # the screenshot is a real rendering: mostly white page with dark text and chart strokes
    from PIL import Image
    img = Image.open(shot).convert("L")
    dark = sum(img.histogram()[:100])
    assert img.size == (1000, 2600) and dark > 5000


def test_reasons_for_checks_not_run_are_translated():
    r = fixed_result()
    r.not_run = [("device.cuda", "no CUDA device here: the GPU forward check was not run"),
                 ("training.trains", "training stage not run (--no-train)")]
    zh = report.render(r, "zh", now=NOW)
    assert "本机没有 CUDA 设备" in zh and "未运行训练阶段" in zh
    assert "no CUDA device here: the GPU forward check was not run" in report.render(r, "en", now=NOW)


def test_review_boxes_needs_review_apart_from_information():
    from grader.checks.static import review
    r = fixed_result()
    assert 'id="needs-review"' not in report.render(r, "en", now=NOW)  # no flag, no box
    src = (CORPUS / "correct_textbook.py").read_text() + "\nimport ctypes\n"
    r.review = review(src, "hw.py")
    assert [e["severity"] for e in r.review] == ["needs_review", "info"]
    n = len(src.splitlines())
    for lang, heading, info in (("en", "Needs review", "For information"), ("zh", "需要人工复核", "供参考")):
        page = report.render(r, lang, now=NOW)
        needs = page.split('id="needs-review"', 1)[1].split("</section>", 1)[0]
        rest = page.split('id="review-info"', 1)[1].split("</section>", 1)[0]
        assert heading in needs and f"hw.py:{n}<" in needs and "native_code" in needs and "textbook" not in needs
        assert info in rest and "textbook_copy" in rest and "ctypes" not in rest
        assert r.review[0]["message"][lang] in needs


# ------------------------------------------------------------------------ the fix first

def _eps_result():
    """One mistake (eps outside the sqrt) breaking three checks, a second mistake named second
    on one of them, and a failure nobody recognised."""
    eps, mom = CATALOGUE["eps_outside_sqrt"], CATALOGUE["reversed_momentum"]
    r = fixed_result()
    r.checks = [
        ScoredCheck(CheckOutcome("structure.4d", True, "ok"), _title("Parameters", "参数"), 5, 5, "visible", False),
        ScoredCheck(CheckOutcome("forward.train.4d", False, "off", diagnosis=eps), _title("Train 4d", "训练 4d"),
                    0, 15, "visible", False),
        ScoredCheck(CheckOutcome("eval.forward", False, "off", diagnoses=[eps, mom]), _title("Eval", "评估"),
                    0, 15, "visible", False),
        ScoredCheck(CheckOutcome("running_stats", False, "off", diagnosis=mom), _title("Running", "滑动"),
                    0, 15, "visible", False),
        ScoredCheck(CheckOutcome("gradients", False, "off", diagnosis=eps), _title("Grad", "梯度"), 0, 10, "visible",
                    False),
        ScoredCheck(CheckOutcome("integration.lenet", False, "lenet off"), _title("LeNet", "LeNet"), 0, 5, "visible",
                    False),
    ]
    r.score, r.max_score = 5, 65
    return r


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_fix_comes_first_one_card_per_mistake(lang):
    page = report.render(_eps_result(), lang, now=NOW)
    fixes = page.index('id="fixes"')
    assert fixes < page.index('class="breakdown"') and fixes < page.index('id="check-forward.train.4d"')
    section = page[fixes:page.index("</section>", fixes)]
    cards = re.findall(r'<div class="card" id="mistake-([\w-]+)"', section)
    assert cards == ["eps_outside_sqrt", "reversed_momentum", "other"]  # costliest first, each once
    eps = section.split('id="mistake-eps_outside_sqrt"')[1].split('<div class="card"')[0]
    # 15 + 15 + 10: eval.forward's points go to the mistake named first on it, so the costs add up
    assert ("costs 40 points" if lang == "en" else "扣 40 分") in eps
    assert eps.count(CATALOGUE["eps_outside_sqrt"].hint[lang].split("(")[0][:20]) == 1
    for cid in ("forward.train.4d", "eval.forward", "gradients"):
        assert f'href="#check-{cid}"' in eps and f'id="check-{cid}"' in page
    mom = section.split('id="mistake-reversed_momentum"')[1].split('<div class="card"')[0]
    assert ("costs 15 points" if lang == "en" else "扣 15 分") in mom
    # the hint is in the card only, not repeated under every check it broke
    assert page.count(CATALOGUE["eps_outside_sqrt"].hint[lang]) == 1
    assert 'href="#check-integration.lenet"' in section.split('id="mistake-other"')[1]


def test_no_path_of_the_grading_machine_and_notes_apart_from_hints():
    r = _eps_result()
    r.facts = dataclasses.replace(r.facts, rubric_path="/srv/course/secret/private.yaml", rubric_name="HW9 private")
    r.checks.append(ScoredCheck(CheckOutcome("advice.buffers", False, "plain", diagnosis=CATALOGUE["not_buffers"]),
                                _title("buffers", "buffer"), 0, 0, "visible", True))
    for lang, hint, suggestion in (("en", "Hint:", "Suggestion:"), ("zh", "修改提示:", "建议:")):
        page = report.render(r, lang, now=NOW)
        assert "/srv/course" not in page and "private.yaml" not in page
        assert "HW9 private" in page and r.facts.rubric_hash in page
        notes = page.split(f"<h2>{TEXT['notes'][lang]}</h2>")[1]
        assert suggestion in notes and hint not in notes
        assert hint in page.split('id="fixes"')[1].split("</section>")[0]


def test_training_explains_the_slides_columns_and_why_a_good_run_loses_points():
    r = _eps_result()
    r.training["runs"]["student_bn"]["test_accuracy"] = 0.5401  # above the reference's 52.97%
    page = report.render(r, "en", now=NOW)
    acc = page.split('class="accuracy"')[1].split("</table>")[0]
    assert "slides, decay 0.9" in acc and "slides, decay 0.99" in acc and "78.16%" in acc
    assert "moving-average decay" in page and '<p class="why applies">' in page
    r.score = r.max_score  # full marks: the sentence stays, unemphasised
    assert '<p class="why">' in report.render(r, "en", now=NOW)


# the report, unchanged (its CSP too), in a 375 px frame; the page around it measures the frame's
# layout (headless Chromium will not make its own window narrower than 500 px)
LAYOUT = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" style="width:375px;height:900px;border:0" srcdoc="SRCDOC"></iframe>
<script>
document.getElementById('f').addEventListener('load', () => {
  const w = document.getElementById('f').contentWindow, d = w.document;
  const bad = [];
  for (const el of d.body.querySelectorAll('*')) {
    if (el.closest('.wide, pre, svg')) continue;
    const r = el.getBoundingClientRect();
    if (r.width && r.right > w.innerWidth + 0.5) bad.push(el.tagName + '.' + el.className + ':' + Math.round(r.right));
  }
  const out = document.createElement('div');
  out.id = 'layout';
  out.textContent = JSON.stringify({width: d.documentElement.scrollWidth, inner: w.innerWidth, bad: bad});
  document.body.appendChild(out);
});
</script></body></html>"""


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_at_375_px_nothing_sticks_out(tmp_path, lang):
    chromium = _chromium()
    r = _eps_result()
    r.facts = dataclasses.replace(r.facts, rubric_name="a-rubric-name-without-any-spaces-that-is-long")
    page = report.render(r, lang, now=NOW)
    f = tmp_path / "frame.html"
    f.write_text(LAYOUT.replace("SRCDOC", html.escape(page, quote=True)), encoding="utf-8")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=800,900",
                          "--virtual-time-budget=3000", "--user-data-dir=" + str(tmp_path / "p"), "--dump-dom",
                          f.as_uri()], capture_output=True, text=True, timeout=90).stdout
    got = json.loads(html.unescape(dom.split('<div id="layout">')[1].split("</div>")[0]))
    assert got["inner"] == 375 and got["width"] <= 375 and got["bad"] == [], got


class _Headings(html.parser.HTMLParser):
    """The text of every h1-h3 of a page, whitespace collapsed."""

    def __init__(self):
        super().__init__()
        self.texts, self._buf = [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._buf = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._buf is not None:
            self.texts.append(" ".join("".join(self._buf).split()))
            self._buf = None

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)


def _print_pages(chromium, page_html: str, tmp_path, name):
    """The page printed by headless Chromium, as the text of each PDF page (pdftotext -layout)."""
    pdftotext = shutil.which("pdftotext")
    if not pdftotext:
        if os.environ.get("CI"):
            pytest.fail("CI must have poppler-utils (pdftotext)")
        pytest.skip("no pdftotext: apt-get install poppler-utils")
    src, pdf = tmp_path / f"{name}.html", tmp_path / f"{name}.pdf"
    src.write_text(page_html, encoding="utf-8")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    "--user-data-dir=" + str(tmp_path / "profile"), f"--print-to-pdf={pdf}", src.as_uri()],
                   capture_output=True, timeout=90)
    assert pdf.exists() and pdf.stat().st_size > 1000, f"chromium printed nothing for {name}"
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=60).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def _long_result(extra: int):
    # the eps result with `extra` more passing checks with long titles, and a long print: the page
    # breaks fall somewhere else for each size
    r = _eps_result()
    long_en = "A check with a deliberately long title that needs most of the table's width to show"
    long_zh = "一个标题特意写得很长的检查项，用来占满表格的大部分宽度并测试换行"
    r.checks = r.checks + [ScoredCheck(CheckOutcome(f"extra.check{i}", True, "ok"), _title(long_en, long_zh), 2, 2,
                                       "visible", False) for i in range(extra)]
    r.student_output = "".join(f"line {i} printed by the student\n" for i in range(extra * 3))
    r.maximum = {"points": 65 + 2 * extra, "rubric_points": 85 + 2 * extra,
                 "left_out": [{"check": "device.cuda", "points": 5, "kind": "machine", "reason": "no CUDA device here"},
                              {"check": "training.trains", "points": 15, "kind": "no_train",
                               "reason": "training stage not run (--no-train)"}]}
    return r


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_printed_no_page_ends_with_a_heading_and_status_cells_do_not_wrap(tmp_path, lang):
    chromium = _chromium()
    T = {k: v[lang] for k, v in TEXT.items()}
    for extra in (0, 9, 21):
        r = _long_result(extra)
        page = report.render(r, lang, now=NOW)
        parser = _Headings()
        parser.feed(page)
        headings = [h for h in parser.texts if len(h) > 2]
        pages = _print_pages(chromium, page, tmp_path, f"{lang}{extra}")
        assert len(pages) >= 2, "the report is expected to span pages here"
        for i, text in enumerate(pages[:-1], 1):
            lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
            assert lines, f"page {i} is empty ({lang}, {extra} extra checks)"
            # a heading wrapped over two lines ends the page with its first part: a prefix counts too
            last = lines[-1]
            assert not any(h == last or (len(last) > 3 and h.startswith(last)) for h in headings), \
                f"page {i} ends with the heading {last!r} ({lang}, {extra} extra checks)"
        whole = "\n".join(pages)
        graded = [s for s in r.checks if not s.advisory]
        # each status cell prints on one line: mark and word together, never the word alone on a line
        assert whole.count(f"✓ {T['passed']}") == sum(1 for s in graded if s.passed)
        assert whole.count(f"✗ {T['failed']}") == sum(1 for s in graded if not s.passed)
        alone = [ln for ln in whole.splitlines() if ln.strip() in (T["passed"], T["failed"], "✓", "✗")]
        assert not alone, alone
