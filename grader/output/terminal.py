"""The terminal table: checks, points, hints and the total, in the chosen language, and the
console it is written to (parent process). Colour only on a terminal that shows it; a console
whose code page lacks a character (Windows' cp936 has no ✓, for one) gets a readable stand-in,
never a UnicodeEncodeError."""
import codecs
import os
import sys
import unicodedata

from grader.output.i18n import reason as reason_text, skipped, t as word
from grader.output.text import check_text, maximum_text
from grader.results import GradeResult


# stand-ins for the symbols the tables and hints use, where the console's code page has none
READABLE = {"✓": "v", "✗": "x", "✔": "v", "✘": "x", "−": "-", "–": "-", "—": "-", "·": "*", "≤": "<=", "≥": ">=",
            "≈": "~", "Δ": "d", "…": "...", "→": "->", "←": "<-", "×": "x", "√": "sqrt", "²": "^2", "₁": "1",
            "‘": "'", "’": "'", "“": '"', "”": '"', "ε": "eps", "γ": "gamma", "β": "beta", "μ": "mu", "σ": "sigma"}
ERRORS = "bn_grade_readable"


def _readable(err):
    if not isinstance(err, UnicodeEncodeError):
        raise err
    out = []
    for ch in err.object[err.start:err.end]:
        stand_in = READABLE.get(ch)
        if stand_in is None:
            # letters with accents lose them; anything else becomes '?'
            stand_in = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"
        try:
            stand_in.encode(err.encoding)
        except (UnicodeEncodeError, LookupError):
            stand_in = "?"
        out.append(stand_in)
    return "".join(out), err.end


codecs.register_error(ERRORS, _readable)


def prepare_stream(stream):
    """Make stream safe for the grader's text: unchanged when it encodes all of Unicode,
    otherwise characters its encoding lacks are written as readable stand-ins. Chinese stays
    Chinese on a cp936 console."""
    encoding = getattr(stream, "encoding", None)
    try:
        name = codecs.lookup(encoding).name if encoding else ""
    except LookupError:
        name = ""
    if name in ("utf-8", "utf-16", "utf-32", "utf-8-sig") or not hasattr(stream, "reconfigure"):
        return stream
    try:
        stream.reconfigure(errors=ERRORS)
    except (ValueError, OSError):  # a closed or detached stream: leave it as it is
        pass
    return stream


def supports_colour(stream=None) -> bool:
    stream = stream or sys.stdout
    if "NO_COLOR" in os.environ or not getattr(stream, "isatty", lambda: False)():
        return False
    if os.name == "nt":
        return _windows_vt(stream)
    return os.environ.get("TERM") != "dumb"


def _windows_vt(stream) -> bool:
    # Windows 10 and later draw ANSI colours once the console is asked to; an older console
    # (or one that refuses) gets plain text rather than escape codes
    try:
        import ctypes
        import msvcrt
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = msvcrt.get_osfhandle(stream.fileno())
        mode = ctypes.c_uint32()
        if not k32.GetConsoleMode(ctypes.c_void_p(handle), ctypes.byref(mode)):
            return False
        return bool(k32.SetConsoleMode(ctypes.c_void_p(handle), mode.value | 0x0004))  # VIRTUAL_TERMINAL_PROCESSING
    except (ImportError, OSError, AttributeError, ValueError):
        return False


UNCONFINED = {"en": "note: this run was unconfined ({engine}): your code ran as you, with your files and the "
                    "network; meant for checking your own code only",
              "zh": "注意：本次运行未加沙箱（{engine}）：你的代码以你本人的身份运行，可访问你的文件和网络；仅用于检查你自己的代码"}


def _colour(enabled):
    def paint(code, text):
        return f"\033[{code}m{text}\033[0m" if enabled else text
    return paint


def render(r: GradeResult, lang: str = "en", colour: bool | None = None, show_output: bool = True) -> str:
    if colour is None:
        colour = supports_colour(sys.stdout)
    c = _colour(colour)
    out = [c("1", f"{word('grader_head', lang)} — {os.path.basename(r.submission)}")]
    if r.sandbox and r.sandbox.get("confined") is False:
        out.append(c("33", UNCONFINED.get(lang, UNCONFINED["en"]).format(engine=r.sandbox.get("engine", "none"))))
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
    if r.maximum:
        out.append(c("2", maximum_text(r.maximum, lang)))
    if show_output and r.student_output.strip():
        lines = r.student_output.rstrip().splitlines()
        out.append(c("2", word("term_printed", lang).format(n=len(lines))))
        out.extend("  | " + line for line in lines[-10:])
    return "\n".join(out)
