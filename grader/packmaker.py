"""`bn-grade pack`: makes a check pack for a rubric's seed (parent process, the instructor's
machine, full edition only: it needs reference/ and checks/variants.py).

No submission is involved. The checks run against the reference layer itself, in this process
(the sandbox's request handlers, called directly, with the reference BatchNorm2d as the class),
with the recording oracle of checks/computed.py: every question a check asks is answered and
kept, and wherever a check prepares a mistake search every candidate variant is computed. The
paths a submission can force are walked too: the (N, C) retry of any_rank checks, the float32
fallback of the gradient check, and each forward request's crash probes. The baselines come
from the training cache (trained once if missing), unless --no-train; --baselines-from adds the
runs of packs made on machines of another device type (a GPU server's, a Mac's).
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

import grader
from grader import pack as P
from grader.checks import crashes, runner
from grader.checks.computed import RecordingOracle
from grader.checks.registry import CHECKS
from grader.checks.worker import Context, Failed, StudentError
from grader.sandbox.inside import handlers
from reference import batchnorm as ref

ACCEPTED = {"either": ("biased", "unbiased"), "biased": ("biased",), "unbiased": ("unbiased",)}


class PackError(P.PackError):
    """Bad input to the pack command: one line, exit 2."""


class _Reference(Context):
    """The checks' client, answered here by the reference layer (trusted code, no sandbox).
    fail_float64: float64 forwards raise, as a submission that insists on float32 does."""

    def __init__(self, rubric, oracle):
        super().__init__(rubric, None, [], cuda=False, oracle=oracle)
        self.models = {}
        self.fail_float64 = False
        self.forwards = []  # (check id, input shape, mode): each is a place a submission may crash

    def start(self):
        pass

    def call(self, msg, what, request=None):
        msg = {k: v for k, v in msg.items() if k != "device"}  # on the CPU: the inputs are the same
        op = msg["op"]
        if op == "forward":
            self.forwards.append((self.check_id, tuple(msg["x"].shape), msg["mode"]))
            if self.fail_float64 and msg["x"].dtype == torch.float64:
                raise StudentError("float64 refused", request=request or {"op": op})
        try:
            resp = handlers.HANDLERS[op](msg, ref.BatchNorm2d, self.models, None)
        except handlers.SubmissionError as e:
            raise StudentError(str(e), request=request or {"op": op}) from None
        if "crash" in resp:
            raise RuntimeError(f"the reference layer failed a request ({what}): {resp.get('error')}")
        resp["ok"] = True
        if "y_device" in resp and msg.get("op") == "forward":
            resp["y_device"] = "cuda"  # the CUDA check's inputs were asked for; its device is not what is packed
        return resp


def _run(ctx, cid, nd=None):
    ctx.check_id = cid
    decl = CHECKS[cid]
    try:
        decl.fn(ctx) if nd is None else decl.fn(ctx, nd)
    except Failed as f:
        # the reference must pass every check: anything else is a grader bug, not a pack
        raise RuntimeError(f"the reference layer fails {cid}: {f}") from None


def entries_for(rubric) -> dict:
    """{entry key: {"inputs", "out"}}: every answer the checks of this rubric may ask for."""
    oracle = RecordingOracle(ACCEPTED[rubric.running_var])
    ctx = _Reference(rubric, oracle)
    ids = [c.id for c in rubric.checks if c.id in CHECKS and c.id != runner.BUILTIN]
    with torch.random.fork_rng():
        for cid in ids:
            _run(ctx, cid)
            if CHECKS[cid].any_rank:
                _run(ctx, cid, 2)  # the retry on (N, C) input after a crash on (N, C, H, W)
        if "gradients" in ids:
            ctx.fail_float64 = True
            _run(ctx, "gradients")  # the float32 fallback
            ctx.fail_float64 = False
        for cid, shape, mode in dict.fromkeys(ctx.forwards):
            ctx.check_id = cid
            crashes.prepare(ctx, shape, mode)
    return oracle.entries


def baselines_for(stage) -> dict:
    """{device type: {"key", "config", "data", "code", "torch", "runs"}} of the training cache,
    trained here if missing."""
    from dataclasses import asdict

    from grader.training.stage import RUN_FIELDS, code_hash
    runs = stage.baselines()
    config = {k: getattr(stage.cfg, k) for k in RUN_FIELDS}
    return {stage.device: {"key": stage.key(), "config": config, "data": stage.data.key, "code": code_hash(),
                           "torch": torch.__version__, "runs": {k: asdict(v) for k, v in runs.items()}}}


def merged_baselines(own: dict, others: list, rubric) -> dict:
    """own plus the device types only the other packs have; each must come from this rubric's
    training configuration. PackError names the file otherwise."""
    from grader.training.stage import RUN_FIELDS
    want = {k: getattr(rubric.training, k) for k in RUN_FIELDS}
    out = dict(own)
    for path in others:
        try:
            other = P.read(path)
        except P.PackError as e:
            raise PackError(str(e)) from None
        if not other.baselines:
            raise PackError(f"{path}: this pack holds no baseline runs to add")
        for device, base in sorted(other.baselines.items()):
            differ = sorted(k for k in RUN_FIELDS if base.get("config", {}).get(k) != want[k])
            if differ:
                raise PackError(f"{path}: its {device} baselines were trained with another training configuration "
                                f"({', '.join(differ)} differ from the rubric's)")
            out.setdefault(device, base)  # this machine's own runs win
    return out


def make(rubric, rubric_text: str, out, stage=None, baselines_from=()) -> P.Pack:
    entries = entries_for(rubric)
    meta = {"format": P.FORMAT, "grader": grader.__version__, "torch": torch.__version__, "seed": rubric.seed,
            "rubric_name": rubric.name, "rubric_sha256": rubric.sha256, "running_var": rubric.running_var,
            "grad_mode_only": rubric.grad_mode_only, "checks": [c.id for c in rubric.checks],
            "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    baselines = merged_baselines(baselines_for(stage) if stage is not None else {}, list(baselines_from), rubric)
    return P.write(P.Pack(meta, rubric_text, entries, baselines), out)


def main(argv: list[str]) -> int:
    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            raise PackError(message)

    p = _Parser(prog="bn-grade pack", description="Write a check pack for the student edition "
                "(docs/student-edition.md): every expected value and mistake-search output for the rubric's seed.")
    p.add_argument("--rubric", metavar="YAML", help="the PUBLIC rubric whose seed students check with "
                   "(default: rubrics/batchnorm.yaml); grade with another seed")
    p.add_argument("--out", required=True, metavar="FILE", help="the pack to write, e.g. hw9.bnpack")
    p.add_argument("--no-train", action="store_true", help="no baseline training runs in the pack (students then "
                   "grade with --no-train)")
    p.add_argument("--data", metavar="DIR", help="CIFAR-10, as for grading (default: $BN_GRADE_DATA or ./data)")
    p.add_argument("--cache", metavar="DIR", help="the training cache the baselines come from (default: "
                   "$BN_GRADE_CACHE or ~/.cache/bn-grader); missing ones are trained once")
    p.add_argument("--no-download", action="store_true", help="never try to download CIFAR-10")
    p.add_argument("--baselines-from", action="append", default=[], metavar="PACK",
                   help="also carry this pack's baseline runs for device types this machine has not trained on "
                   "(make a pack on a GPU machine, then add it here); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    a = p.parse_args(argv)

    from grader import rubric as rubric_mod
    from grader.grading import known_checks, training_ids
    try:
        rubric = rubric_mod.load(a.rubric, known_checks=known_checks())
    except rubric_mod.RubricError as e:
        raise PackError(str(e)) from None
    stage = None
    if not a.no_train and training_ids(rubric):
        from grader.output.progress import Progress
        from grader.training import data
        from grader.training.stage import Stage
        cache = Path(a.cache) if a.cache else data.default_cache_dir()
        try:
            dataset = data.load(a.data, cache, download=not a.no_download)
        except data.DataError as e:
            raise PackError(f"{e} (or --no-train for a pack without baselines)") from None
        stage = Stage(rubric.training, dataset, cache, Progress(enabled=False if a.quiet else None))
    hidden = [c.id for c in rubric.checks if c.visibility == "hidden"]
    made = make(rubric, Path(rubric.path).read_text(encoding="utf-8"), a.out, stage, a.baselines_from)
    print(f"Pack: {a.out} ({made.size / 1e6:.2f} MB, {len(made.entries)} entries, seed {rubric.seed}, "
          f"baselines: {', '.join(made.baselines) or 'none'}; sha256 {made.sha256[:16]}…)")
    print("Anyone with this pack can check against seed "
          f"{rubric.seed}: grade the class with a private rubric with another seed (docs/student-edition.md)"
          + (f"; its hidden checks ({', '.join(hidden)}) are in it too" if hidden else ""), file=sys.stderr)
    return 0
