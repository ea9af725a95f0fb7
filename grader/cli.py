"""Command line: `main(argv) -> int` (grader process).

Bad input from the user (path, flag, rubric, data: errors.UsageError and the errors derived from
it) is one line on stderr and exit 2; a broken
submission is a graded zero, never a traceback; a grader bug is exit 3, with the traceback
only under --debug. torch is imported only once the arguments are known to be usable, and
the sandbox zygote is forked right after it, before anything else runs.

  bn-grade SUB.py|SUB.zip|SUB.ipynb [...]          one submission
  bn-grade SUBMISSIONS_DIR --out OUT [...]          a class: one entry per student
  bn-grade --gradebook OUT                          rebuild OUT/gradebook.csv and summary.html
  bn-grade DIR --out OUT --shard-from-env           one task of a job array (docs/batch.md)
  bn-grade DIR --out OUT --finish                   the array's last step: grade the missing, build the gradebook
  bn-grade --prepare --data D --cache C             decode the data and train the baselines once, for an array
  bn-grade --gradescope [...]                       inside Gradescope's autograder image
  bn-grade gradescope-bundle --out autograder.zip   the zip to upload to Gradescope
  bn-grade pack --rubric R --out hw9.bnpack         a check pack for the student edition
  bn-grade SUB.py --pack hw9.bnpack [...]           check against a pack (the student edition's way)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import tempfile
import traceback
from pathlib import Path

from grader import cpus
from grader.errors import UsageError  # every error of bad input derives from it: one line, exit 2
from grader.results import ExitStatus

PROG = "bn-grade"
SUFFIXES = (".py", ".zip", ".ipynb")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog=PROG, description="Grade BatchNorm2d homework submissions against the course's reference.")
    p.add_argument("submission", nargs="?", help="a .py, .zip or .ipynb submission, or a folder with one entry per "
                   "student (needs --out)")
    p.add_argument("--rubric", help="rubric YAML (default: rubrics/batchnorm.yaml)")
    p.add_argument("--no-train", action="store_true", help="skip the CIFAR-10 training stage")
    p.add_argument("--data", metavar="DIR", help="CIFAR-10: torchvision's cifar-10-batches-py or an image folder "
                   "DIR/{train,test}/<class>/*.jpg (default: $BN_GRADE_DATA or ./data)")
    p.add_argument("--cache", metavar="DIR", help="decoded data and baseline runs (default: $BN_GRADE_CACHE or "
                   "the platform's cache folder: ~/.cache/bn-grader, ~/Library/Caches/bn-grader, "
                   "%%LOCALAPPDATA%%\\bn-grader\\Cache)")
    p.add_argument("--no-download", action="store_true", help="never try to download CIFAR-10")
    p.add_argument("--json", metavar="PATH", help="write Gradescope-format results.json here (one submission)")
    p.add_argument("--out", metavar="DIR", help="write results.json and report.html (a class: OUT/<student>/...)")
    p.add_argument("--report", metavar="PATH", help="write the HTML report here (one submission)")
    p.add_argument("--junit", metavar="PATH", help="write JUnit XML, one testcase per check")
    p.add_argument("--fail-under", metavar="SCORE",
                   help="exit 1 when a score is below SCORE points, or below a percentage such as 80%%")
    p.add_argument("--jobs", type=_jobs, metavar="N", help="parallel graders for a class (default, or empty: the "
                   "CPUs this task may use, by affinity and cgroup quota)")
    p.add_argument("--shard", metavar="K/N", help="grade only shard K of N, K from 1 (by a hash of the student id)")
    p.add_argument("--shard-index", type=_whole, metavar="I", help="grade only shard I, counted "
                   "from 0, of --shard-count N")
    p.add_argument("--shard-count", type=_whole, metavar="N", help="how many shards there are")
    p.add_argument("--shard-from-env", action="store_true", help="the shard from the scheduler: "
                   "$SLURM_ARRAY_TASK_ID (any array start), $JOB_COMPLETION_INDEX (Kubernetes, with --shard-count) "
                   "or $CI_NODE_INDEX (GitLab)")
    p.add_argument("--finish", action="store_true", help="the last step after the shards: grade every student still "
                   "missing and build the gradebook (run it with --dependency=afterany)")
    p.add_argument("--force", action="store_true", help="let the gradebook be rebuilt with fewer students than it "
                   "lists now")
    p.add_argument("--prepare", action="store_true", help="decode --data into --cache and train the baselines once, "
                   "so the tasks of a job array only read them (no download, no duplicated training)")
    p.add_argument("--regrade", action="store_true", help="grade students that already have results in OUT")
    p.add_argument("--gradebook", metavar="OUT", help="only rebuild OUT/gradebook.csv and OUT/summary.html")
    p.add_argument("--roster", metavar="CSV", help="a class's roster (columns id, name, email): the gradebook lists "
                   "students by it, those without a submission as missing (docs/batch.md)")
    p.add_argument("--gradescope", action="store_true", help="read /autograder/submission, write "
                   "/autograder/results/results.json")
    p.add_argument("--lang", choices=("en", "zh"), help="language of titles, hints and the report (default: the "
                   "rubric's, else the locale's)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-color", action="store_true", help="no colour in the terminal output")
    p.add_argument("--epochs", type=int, metavar="N", help="train N epochs instead of the rubric's (trying the "
                   "training stage on a laptop; not for grading)")
    p.add_argument("--quick", action="store_true", help="the training stage in about a minute: 1 epoch on "
                   "10,000 images (trying it out; not for grading)")
    p.add_argument("--unconfined", action="store_true", help="run student code without the bubblewrap sandbox "
                   "(for your own file; a class or Gradescope needs this flag where the sandbox cannot run)")
    p.add_argument("--pack", metavar="FILE", help="grade against a check pack (FILE.bnpack from `bn-grade pack`): "
                   "how the student edition grades (docs/student-edition.md)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of grader errors")
    return p


def _jobs(text):
    # `--jobs "$SLURM_CPUS_PER_TASK"` is empty when --cpus-per-task was not requested: the
    # default (what the task may use) rather than an error that kills every task of an array
    if not text.strip():
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 1")
    return n


def _whole(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def _shard(args):
    """The Shard of --shard / --shard-index / --shard-from-env, or None."""
    from grader.shards import Shard  # no torch: the sandbox has not started yet
    given = [f for f, v in (("--shard", args.shard), ("--shard-index", args.shard_index is not None),
                            ("--shard-from-env", args.shard_from_env)) if v]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: give one way of naming the shard")
    if args.shard_count is not None and not (args.shard_index is not None or args.shard_from_env):
        raise UsageError("--shard-count goes with --shard-index or --shard-from-env")
    if args.shard:
        return Shard.parse(args.shard)
    if args.shard_index is not None:
        if args.shard_count is None:
            raise UsageError("--shard-index needs --shard-count N")
        return Shard.of(args.shard_index, args.shard_count)
    if args.shard_from_env:
        return Shard.from_env(os.environ, args.shard_count)
    return None


def _threshold(text, max_score):
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise UsageError(f"--fail-under: '{text}' is not a number or a percentage") from None
    return value * max_score / 100.0 if percent else value


def _below(result, fail_under) -> bool:
    return fail_under is not None and result.score < _threshold(fail_under, result.max_score) - 1e-9


def _check_submission(path: Path):
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir():
        return
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{path}: not a .py, .zip or .ipynb file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None


def _check_writable(path: Path, flag):
    # before grading, not after: a class graded for nothing is worse than an early error
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create its folder: {e.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {path}: folder is not writable")


def _gradescope_paths():
    root = Path(os.environ.get("BN_GRADESCOPE_ROOT", "/autograder"))
    return root / "submission", root / "results" / "results.json"


def _validate(args):
    if args.roster:
        from grader import gradebook
        try:
            args.roster_students = gradebook.load_roster(args.roster)
        except gradebook.RosterError as e:
            raise UsageError(f"--roster {e}") from None
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: must be at least 1")
    if (args.epochs is not None or args.quick) and (args.gradescope or args.prepare):
        raise UsageError("--epochs and --quick are for trying the training stage; grading follows the rubric")
    if args.gradebook:
        if not Path(args.gradebook).is_dir():
            raise UsageError(f"--gradebook {args.gradebook}: no such folder")
        return
    if args.prepare:
        if args.submission or args.out or args.no_train:
            raise UsageError("--prepare takes only --data, --cache and --rubric (it trains the baselines; no "
                             "submissions, --out or --no-train)")
        return False
    if args.gradescope:
        sub, results = _gradescope_paths()
        args.submission, args.json = str(sub), str(results)
    if not args.submission:
        raise UsageError("the following arguments are required: submission")
    sub = Path(args.submission)
    _check_submission(sub)
    batch = sub.is_dir() and not args.gradescope
    if batch and not args.out:
        raise UsageError(f"{sub}: is a folder: grading a class needs --out DIR (or give one .py/.zip/.ipynb)")
    if args.roster and not batch:
        raise UsageError("--roster is for a folder of submissions or --gradebook OUT")
    if batch and (args.json or args.report):
        raise UsageError("--json/--report are for one submission; a class gets OUT/<student>/results.json")
    sharded = args.shard or args.shard_index is not None or args.shard_from_env or args.shard_count is not None
    if not batch and (sharded or args.regrade or args.jobs or args.finish):
        raise UsageError("--shard*, --finish, --regrade and --jobs are for a folder of submissions")
    if args.finish and sharded:
        raise UsageError("--finish grades whatever no shard graded: run it without --shard*")
    args.shard_obj = _shard(args)
    if args.fail_under is not None:
        _threshold(args.fail_under, 100.0)  # validate before the expensive part
    for flag, value in (("--json", args.json), ("--report", args.report), ("--junit", args.junit)):
        if value and not args.gradescope:
            _check_writable(Path(value), flag)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    if args.out:
        _check_writable(Path(args.out) / "results.json", "--out")
    return batch


def _training_stage(args, rubric, lang="en"):
    from grader.output.progress import Progress
    from grader.training import data
    from grader.training.stage import Stage

    cache = Path(args.cache) if args.cache else data.default_cache_dir()
    # a cache made by --prepare is what the array's tasks read: they never download (compute
    # nodes seldom can, and eight tasks downloading into one folder at once would collide)
    prepared = (cache / data.PREPARED).exists() and not args.prepare
    # a DataError is a UsageError: one line and exit 2 (main)
    dataset = data.load(args.data, cache, download=not (args.no_download or prepared))
    progress = Progress(enabled=False if args.quiet else None, lang=lang)
    from grader.training.stage import adjusted
    cfg = adjusted(rubric.training, args.epochs, args.quick)
    if getattr(args, "oracle", None) is not None:
        from grader.training.packed import PackStage  # the baselines come from the pack
        stage = PackStage(cfg, dataset, cache, progress, args.oracle.pack)
    else:
        stage = Stage(cfg, dataset, cache, progress)
    stage.shortened = cfg != rubric.training
    return stage


def _write_outputs(result, args, lang):
    from grader.output import gradescope, report
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


def _single(args, rubric, zyg, stage, lang):
    from grader import grading, intake
    from grader.output import terminal

    sub = Path(args.submission)
    # a .py is graded where it is; a folder, zip or notebook is unpacked into a scratch folder
    # (made only then: a grader killed outright leaves nothing behind for a .py)
    plain = sub.is_file() and sub.suffix == ".py"
    with contextlib.nullcontext(str(sub.parent)) if plain else \
            tempfile.TemporaryDirectory(prefix="bn-grade-intake-") as staging:
        student = intake.safe_id(sub.stem if sub.is_file() else sub.name)
        result, _ = grading.grade_entry(student, sub, Path(staging), rubric, zyg, stage=stage,
                                        oracle=getattr(args, "oracle", None))
    print(terminal.render(result, lang, colour=False if args.no_color else None))
    _write_outputs(result, args, lang)
    if args.junit:
        from grader.output import junit
        junit.write([result], args.junit)
        print(f"JUnit: {args.junit}")
    if _below(result, args.fail_under):
        print(f"Score {result.score:g} is below --fail-under {args.fail_under}", file=sys.stderr)
        return ExitStatus.BELOW_THRESHOLD
    return ExitStatus.OK


def _batch(args, rubric, zyg, stage, lang):
    from grader import batch, gradebook

    out = Path(args.out)
    shard = args.shard_obj
    results = batch.run(Path(args.submission), out, rubric, zyg, jobs=args.jobs or cpus.default_jobs(),
                        shard=shard, regrade=args.regrade, stage=stage, lang=lang, log=batch.stderr_log(args.quiet))
    if shard is not None:
        # a shard never writes the class gradebook: it would show part of the class, and shards
        # finishing together would race; the final step (--finish, or --gradebook) builds it
        print(f"Shard {shard}: graded {len(results)} now; the gradebook is built by the final step "
              f"(bn-grade {args.submission} --out {out} --finish)")
    else:
        if args.finish and results:
            print(f"{len(results)} students had no results (their shard failed or never ran): graded now",
                  file=sys.stderr)
        rows, matches = gradebook.rebuild(out, lang=lang, roster=getattr(args, "roster_students", None),
                                          force=args.force)
        print(f"Graded {len(results)} now; gradebook of {len(rows)} students: {out / 'gradebook.csv'}")
        print(f"Summary: {out / 'summary.html'}" + (f" ({len(matches)} similar pairs flagged)" if matches else ""))
    if args.junit:
        from grader.output import junit
        junit.write(results, args.junit)
        print(f"JUnit: {args.junit}")
    below = [r.student for r in results if _below(r, args.fail_under)]
    if below:
        print(f"{len(below)} below --fail-under {args.fail_under}: {', '.join(below[:20])}", file=sys.stderr)
        return ExitStatus.BELOW_THRESHOLD
    return ExitStatus.OK


def _prepare(args, stage):
    import json
    from grader.output.files import write_atomic
    from grader.training import data
    if stage is None:
        raise UsageError("--prepare: the rubric has no training checks, so there is nothing to prepare")
    runs = stage.baselines()
    cache = stage.cache_dir
    write_atomic(cache / data.PREPARED, json.dumps({"data": stage.data.key, "baseline_key": stage.key(),
                                                     "data_file": stage.data.cache_file}, indent=1))
    print(f"Prepared {cache}: decoded data {stage.data.cache_file}; baselines no BN "
          f"{runs['no_bn'].test_accuracy:.2%}, reference BN {runs['reference_bn'].test_accuracy:.2%}. "
          f"Tasks given --cache {cache} will not download.")
    return ExitStatus.OK


def _sandbox_mode(args, batch) -> str:
    """bubblewrap where it runs; elsewhere a student's own file runs unconfined, said in one
    line, and a class or Gradescope refuses unless the instructor passed --unconfined."""
    from grader.sandbox import engine, zygote
    asked = os.environ.get("BN_GRADE_SANDBOX")
    if asked == "spawned":  # a fresh interpreter per worker, unconfined (grader/sandbox/spawned.py)
        return "spawned"
    if args.unconfined or asked == "unconfined":
        return "unconfined" if zygote.forks() else "spawned"
    # Windows and macOS have no sandbox engine: a spawned worker, under the same refusal rules
    why = engine.probe() if zygote.forks() else f"no sandbox engine on {sys.platform}"
    if not why:
        return "bubblewrap"
    if batch or args.gradescope:
        what = "--gradescope" if args.gradescope else "grading a class"
        fix = engine.FIX if zygote.forks() else "grade a class on Linux, where bubblewrap confines each submission"
        raise UsageError(f"{what} needs the sandbox, and {why}: {fix}; or pass --unconfined to run "
                         "students' code without it")
    print(f"{PROG}: note: running your code unconfined ({why}); fine for checking your own file, never for "
          "grading others'", file=sys.stderr)
    return "unconfined" if zygote.forks() else "spawned"


def _pack(args, batch):
    """(pack, rubric path or None) for --pack; the student edition without one is told how to grade."""
    from grader.checks import oracle
    if not args.pack:
        oracle.computed()  # the student edition says how to grade without a pack (a UsageError)
        return None
    if batch or args.gradescope:
        raise UsageError("--pack is for checking one submission; grade a class with the full edition")
    from grader import pack
    try:
        return pack.read(args.pack)
    except pack.PackError as e:
        raise UsageError(f"--pack {e}") from None


def _pack_rubric(args, pack, known):
    # the pack carries the rubric it was made for; another one must have the same seed and conventions
    from grader import pack as pack_mod
    try:
        return pack_mod.rubric_for(pack, args.rubric, known)
    except pack_mod.PackError as e:
        raise UsageError(f"--pack {e}") from None


def run(args) -> int:
    batch = _validate(args)
    if args.gradebook:
        from grader import gradebook
        rows, matches = gradebook.rebuild(Path(args.gradebook), lang=args.lang or "en",
                                          roster=getattr(args, "roster_students", None), force=args.force)
        print(f"Gradebook of {len(rows)} students: {Path(args.gradebook) / 'gradebook.csv'}; "
              f"{len(matches)} similar pairs")
        return ExitStatus.OK

    # How idle OpenMP threads wait: a short spin where the grader's runs have the cores to
    # themselves, sleeping at once where jobs share them (grader/cpus.py has the figures). Read
    # once, when torch loads its OpenMP runtime: set before the import, and the sandbox's zygote
    # is started with the same (sandbox/engine.py)
    os.environ.update(cpus.openmp_wait_env(exclusive=not batch or args.jobs == 1))
    # the sandbox first: its zygote imports torch while this process does (grader/sandbox/zygote.py)
    from grader.sandbox import zygote
    # --prepare trains only the trusted baselines, here: no student code, so no sandbox to start
    zyg = None if args.prepare else zygote.shared(_sandbox_mode(args, batch))

    from grader import rubric as rubric_mod
    from grader.grading import known_checks, training_ids
    from grader.output.i18n import default_language

    pack = _pack(args, batch)
    rubric = _pack_rubric(args, pack, known_checks()) if pack else \
        rubric_mod.load(args.rubric, known_checks=known_checks())
    args.oracle = None
    if pack is not None:
        from grader.checks.oracle import PackOracle
        args.oracle = PackOracle(pack)
    lang = args.lang or default_language(None if rubric.language == "auto" else rubric.language)
    stage = None
    if not args.no_train and training_ids(rubric):
        stage = _training_stage(args, rubric, lang)
    if args.prepare:
        return _prepare(args, stage)
    if batch:
        return _batch(args, rubric, zyg, stage, lang)
    return _single(args, rubric, zyg, stage, lang)


class Terminated(BaseException):
    pass


def _terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from grader.output import terminal
    for stream in (sys.stdout, sys.stderr):  # a Windows console's code page (cp936) must not raise
        terminal.prepare_stream(stream)
    debug = "--debug" in argv
    if argv[:1] == ["pack"]:
        try:
            from grader import packmaker
        except ImportError:  # the student edition has no reference to make a pack from
            print(f"{PROG} pack: error: this is the student edition; packs are made with the full bn-grader",
                  file=sys.stderr)
            return int(ExitStatus.USAGE)
        try:
            return packmaker.main(argv[1:])
        except packmaker.PackError as e:
            print(f"{PROG} pack: error: {e}", file=sys.stderr)
            return int(ExitStatus.USAGE)
    if argv[:1] == ["gradescope-bundle"]:
        from grader import gradescope_bundle
        try:
            return gradescope_bundle.main(argv[1:])
        except gradescope_bundle.BundleError as e:
            print(f"{PROG} gradescope-bundle: error: {e}", file=sys.stderr)
            return int(ExitStatus.USAGE)
    main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (a scheduler, a CI timeout) ends the run like Ctrl-C: temporary folders are
    # removed on the way out, and the sandbox dies with this process
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _main(argv, debug)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv, debug) -> int:
    try:
        return int(run(_parser().parse_args(argv)))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return int(ExitStatus.USAGE)
    except Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return int(ExitStatus.INTERNAL)
