"""Command line: `main(argv) -> int` (parent process).

Bad input from the user (path, flag, rubric) is one line on stderr and exit 2; a broken
submission is a graded zero, never a traceback; a grader bug is exit 3, with the traceback
only under --debug. torch is imported only once the arguments are known to be usable, and
the sandbox zygote is forked right after it, before anything else runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from grader.results import ExitStatus

PROG = "bn-grade"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog=PROG, description="Grade a BatchNorm2d homework submission against the course's reference.")
    p.add_argument("submission", help="the student's .py file defining BatchNorm2d")
    p.add_argument("--rubric", help="rubric YAML (default: rubrics/batchnorm.yaml)")
    p.add_argument("--no-train", action="store_true", help="skip the CIFAR-10 training stage")
    p.add_argument("--data", metavar="DIR", help="CIFAR-10: torchvision's cifar-10-batches-py or an image folder "
                   "DIR/{train,test}/<class>/*.jpg (default: $BN_GRADE_DATA or ./data)")
    p.add_argument("--cache", metavar="DIR", help="decoded data and baseline runs (default: $BN_GRADE_CACHE or "
                   "~/.cache/bn-grader)")
    p.add_argument("--no-download", action="store_true", help="never try to download CIFAR-10")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", metavar="PATH", help="write Gradescope-format results.json here")
    p.add_argument("--out", metavar="DIR", help="write OUT/results.json and OUT/report.html")
    p.add_argument("--report", metavar="PATH", help="write the HTML report here")
    p.add_argument("--fail-under", metavar="SCORE",
                   help="exit 1 when the score is below SCORE points, or below a percentage such as 80%%")
    p.add_argument("--lang", choices=("en", "zh"), help="language of titles, hints and the report (default: the "
                   "rubric's, else the locale's)")
    p.add_argument("--no-color", action="store_true", help="no colour in the terminal output")
    p.add_argument("--debug", action="store_true", help="show tracebacks of grader errors")
    return p


def _threshold(text, max_score):
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise UsageError(f"--fail-under: '{text}' is not a number or a percentage") from None
    return value * max_score / 100.0 if percent else value


def _check_submission(path: Path):
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; give the .py file that defines BatchNorm2d")
    if path.suffix != ".py":
        raise UsageError(f"{path}: not a .py file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None


def _check_writable(path: Path, flag):
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {path}: folder is not writable")


def _training_stage(args, rubric):
    from grader.output.progress import Progress
    from grader.training import data
    from grader.training.stage import Stage

    cache = Path(args.cache) if args.cache else data.default_cache_dir()
    try:
        dataset = data.load(args.data, cache, download=not args.no_download)
        progress = Progress(enabled=False if args.quiet else None)
        return Stage(rubric.training, dataset, cache, progress)
    except data.DataError as e:
        raise UsageError(str(e)) from None


def run(args) -> int:
    sub = Path(args.submission)
    _check_submission(sub)
    if args.fail_under is not None:
        _threshold(args.fail_under, 100.0)  # validate before the expensive part
    if args.json:
        _check_writable(Path(args.json), "--json")
    if args.report:
        _check_writable(Path(args.report), "--report")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")

    # Idle OpenMP threads sleep instead of spinning: on a busy machine (a class graded in
    # parallel, a shared server) spinning threads slowed training 2-50x in measurements here.
    # Read once, when torch loads its OpenMP runtime, so it must be set before the import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # torch, then the zygote at once: see grader/sandbox/zygote.py
    from grader.sandbox import zygote
    zyg = zygote.shared()

    from grader import rubric as rubric_mod
    from grader.grading import grade_file, known_checks, training_ids
    from grader.output import gradescope, terminal

    try:
        rubric = rubric_mod.load(args.rubric, known_checks=known_checks())
    except rubric_mod.RubricError as e:
        raise UsageError(str(e)) from None
    from grader.output.i18n import default_language
    lang = args.lang or default_language(None if rubric.language == "auto" else rubric.language)

    stage = None
    if not args.no_train and training_ids(rubric):
        stage = _training_stage(args, rubric)
    result = grade_file(sub, rubric, zyg, stage=stage)
    print(terminal.render(result, lang, colour=False if args.no_color else None))
    from grader.output import report
    outputs = []
    if args.json:
        outputs.append((Path(args.json), gradescope.write_json, "Results"))
    if args.report:
        outputs.append((Path(args.report), report.write, "Report"))
    if args.out:
        outputs.append((Path(args.out) / "results.json", gradescope.write_json, "Results"))
        outputs.append((Path(args.out) / "report.html", report.write, "Report"))
    for p, writer, label in outputs:
        try:
            writer(result, p, lang)
        except OSError as e:
            raise UsageError(f"{p}: cannot write: {e.strerror}") from None
        print(f"{label}: {p}")
    if args.fail_under is not None and result.score < _threshold(args.fail_under, result.max_score) - 1e-9:
        print(f"Score {result.score:g} is below --fail-under {args.fail_under}", file=sys.stderr)
        return ExitStatus.BELOW_THRESHOLD
    return ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        return int(run(_parser().parse_args(argv)))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return int(ExitStatus.USAGE)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return int(ExitStatus.INTERNAL)
