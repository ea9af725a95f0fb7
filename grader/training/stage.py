"""The training stage (parent process; the student's run goes through the sandbox).

Three LeNet-5 runs on CIFAR-10 from the same initial weights and batch order: no BN and the
reference BN (trained here, trusted, cached on disk), and the student's BN (trained in a
sandboxed worker). What is scored never rests on numbers the worker reports: it returns its
trained weights and each norm layer's gamma, beta and running statistics; the parent loads
them into LeNet-5 with the reference BN and measures validation loss and test accuracy
itself. A reported validation loss that disagrees with that measurement is flagged.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from grader import cpus
from grader.output import files
from grader.results import CheckOutcome
from grader.sandbox.zygote import SandboxError
from grader.training import data as data_mod
from grader.training import lenet


def _ref():
    # on use, not at import: the student edition has no reference/batchnorm.py (training/packed.py)
    from reference import batchnorm
    return batchnorm


def _fused():
    from reference import fused  # the same layer with a fast training step: the baselines' (full edition)
    return fused

CHECK_IDS = ("training.trains", "training.accuracy", "training.beats_no_bn")
# what the baselines depend on; thresholds and points do not change a run
RUN_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "seed", "val_fraction",
              "max_train_images", "activation")


@dataclass
class Run:
    test_accuracy: float | None
    train_loss: list
    val_loss: list
    seconds: float
    cached: bool = False
    val_accuracy: list = field(default_factory=list)


def _mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(policy: str) -> str:
    """'auto': CUDA, else Apple's GPU (MPS, a student's Mac), else the CPU."""
    if policy == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if policy == "cuda" and not available:
        raise data_mod.DataError("training.device is 'cuda' in the rubric but no CUDA device is available")
    if available:
        return "cuda"
    return "mps" if _mps() else "cpu"


def cores(platform: str | None = None) -> int:
    """The CPUs this process may use (grader/cpus.py, the one implementation)."""
    return cpus.default_jobs(platform=platform)


QUICK = {"epochs": 1, "max_train_images": 10_000}  # --quick: the stage in about a minute on a laptop


def adjusted(cfg, epochs: int | None = None, quick: bool = False):
    """The rubric's training configuration with the student's --epochs / --quick applied."""
    if quick:
        cfg = replace(cfg, **{k: (min(v, cfg.max_train_images) if k == "max_train_images" and cfg.max_train_images
                                  else v) for k, v in QUICK.items()})
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    return cfg


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def code_hash():
    h = hashlib.sha256()
    for mod in (lenet, _ref(), _fused()):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


class Stage:
    def __init__(self, cfg, dataset: data_mod.Dataset, cache_dir, progress=None):
        self.cfg = cfg
        self.data = dataset
        self.cache_dir = Path(cache_dir)
        self.device = resolve_device(cfg.device)
        self.progress = progress
        self.threads = cores()
        n = len(dataset.train_labels)
        train_idx, val_idx = data_mod.split(n, cfg.val_fraction, cfg.seed)
        if cfg.max_train_images:
            train_idx = train_idx[:cfg.max_train_images]
        self.train_idx, self.val_idx = train_idx, val_idx
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self.init = lenet.LeNet5(activation=cfg.activation).weight_state()
        self._baselines = None
        self._split = None
        self._announced = False
        self.shortened = False  # --quick or --epochs changed the rubric's configuration (cli.py)

    # ------------------------------------------------------------------ facts
    def key(self) -> str:
        run = {k: getattr(self.cfg, k) for k in RUN_FIELDS}
        blob = json.dumps({"run": run, "data": self.data.key, "device": self.device, "torch": torch.__version__,
                           "code": code_hash()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def info(self, runs: dict) -> dict:
        return {"device": self.device, "epochs": self.cfg.epochs, "seed": self.cfg.seed,
                "config": {k: getattr(self.cfg, k) for k in RUN_FIELDS}, "baseline_key": self.key(),
                "threads": self.threads if self.device == "cpu" else None,
                "dataset": {"kind": self.data.kind, "path": self.data.path, "n_train": len(self.train_idx),
                            "n_val": len(self.val_idx), "n_test": len(self.data.test_labels),
                            "cache": self.data.cache_file, "cached": self.data.cached},
                "runs": {k: asdict(v) for k, v in runs.items()}}

    # ------------------------------------------------------------------ data on the device
    def _tensors(self):
        # built once: indexing out the training split copies ~140 MB, and every student's
        # verification and run would otherwise pay it again
        if self._split is None:
            d = self.data
            t = (d.train_images[self.train_idx], d.train_labels[self.train_idx], d.train_images[self.val_idx],
                 d.train_labels[self.val_idx], d.test_images, d.test_labels)
            if self.device != "cpu":
                t = tuple(x.to(self.device) for x in t)
            self._split = t
        return self._split

    def _train_here(self, name, norm, progress=None):
        tr_x, tr_y, va_x, va_y, te_x, te_y = self._tensors()
        model = lenet.LeNet5(norm=norm, activation=self.cfg.activation)
        model.load_weight_state(self.init)
        model.to(self.device)
        c = self.cfg
        hist = lenet.train(model, tr_x, tr_y, va_x, va_y, epochs=c.epochs, batch_size=c.batch_size,
                           optimizer=c.optimizer, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                           seed=c.seed, device=self.device, progress=progress, name=name)
        _, acc = lenet.evaluate(model, te_x, te_y, device=self.device)
        run = Run(acc, hist["train_loss"], hist["val_loss"], round(hist["seconds"], 2),
                  val_accuracy=hist["val_accuracy"])
        if self.progress is not None:
            self.progress.done(f"{name:<13} test accuracy {acc:.2%} ({run.seconds:.0f} s)")
        return run

    # ------------------------------------------------------------------ how long it will take
    def step_seconds(self, steps: int = 3, threads: int | None = None) -> float:
        """One training step of LeNet-5 with the reference BN on this device (on `threads` of
        the CPU's, default the job's), measured."""
        if self.device != "cpu":
            return self._step_seconds(steps)
        torch.set_num_threads(threads or self.threads)
        try:
            return self._step_seconds(steps)
        finally:
            torch.set_num_threads(self.threads)

    def _step_seconds(self, steps):
        c = self.cfg
        try:
            fast = _fused()
            norm = lambda ch, d: fast.FusedBatchNorm2d(ch, d)  # noqa: E731
        except ImportError:  # the student edition: the network without BN, a little faster
            norm = None
        model = lenet.LeNet5(norm=norm, activation=c.activation).to(self.device)
        opt = lenet.make_optimizer(model, c.optimizer, c.lr, c.momentum, c.weight_decay)
        x = torch.randn(c.batch_size, 3, 32, 32, device=self.device)
        y = torch.randint(0, 10, (c.batch_size,), device=self.device)
        times = []
        for _ in range(steps + 1):  # the first pays for allocation and kernel selection
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())  # waits for an asynchronous device
            times.append(time.perf_counter() - t0)
        return min(times[1:])

    def estimate(self, cached: bool | None = None) -> dict:
        """Seconds the stage will take: the runs still to train x epochs x steps, plus the
        validation and test passes (a forward alone costs about a third of a step)."""
        c = self.cfg
        if cached is None:
            cached = self.baselines_cached()
        steps = math.ceil(len(self.train_idx) / c.batch_size)
        evals = math.ceil(len(self.val_idx) / c.batch_size) * c.epochs + math.ceil(
            len(self.data.test_labels) / c.batch_size)

        def run(step):
            return c.epochs * steps * step + evals * step / 3

        step = self.step_seconds()
        seconds = run(step)  # the student's run
        side = not cached and self._side_by_side()
        if side:
            # the two baselines side by side, each on half the cores: about one run at that many threads
            seconds += run(self.step_seconds(threads=max(1, self.threads // 2)))
        elif not cached:
            seconds += 2 * run(step)
        return {"seconds": seconds, "runs": 1 if cached else 3, "epochs": c.epochs, "steps": steps,
                "step_seconds": step, "side_by_side": side}

    def baselines_cached(self) -> bool:
        return self._baselines is not None or (self.cache_dir / f"baselines-{self.key()[:24]}.json").exists()

    def announce(self):
        """Say before the stage starts how long it will take (on the progress stream)."""
        if self.progress is None or not self.progress.enabled:
            return
        try:
            e = self.estimate()
        except (RuntimeError, ValueError) as err:  # an estimate is a courtesy, never a failure
            self.progress.stream.write(f"training stage: no time estimate ({type(err).__name__})\n")
            return
        where = f"{self.device}, {self.threads} threads" if self.device == "cpu" else self.device
        self.progress.stream.write(
            f"training stage: {e['runs']} run(s) x {e['epochs']} epoch(s) x {e['steps']} steps on {where}"
            + (" (the two baselines side by side)" if e["side_by_side"] else "") + ": "
            f"about {_clock(e['seconds'])}" + (" (shortened by --quick/--epochs: not the graded configuration)"
                                              if self.shortened else "") + "\n")
        self.progress.stream.flush()

    # ------------------------------------------------------------------ baselines
    def baselines(self) -> dict:
        """{'no_bn': Run, 'reference_bn': Run}, trained once per configuration and cached."""
        if self._baselines is not None:
            return self._baselines
        # concurrent tasks sharing the cache: one trains, the others wait and read its result
        with files.locked(self.cache_dir):
            return self._load_or_train()

    def _load_or_train(self) -> dict:
        path = self.cache_dir / f"baselines-{self.key()[:24]}.json"
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                self._baselines = {k: Run(**{**v, "cached": True}) for k, v in raw.items()}
                return self._baselines
            except (ValueError, TypeError):
                pass  # rebuilt below
        runs = self._train_baselines()
        try:  # readable by whoever shares the cache, as the umask says
            files.write_atomic(path, json.dumps({k: asdict(v) for k, v in runs.items()}))
        except OSError:
            pass  # a cache we cannot write costs time, not correctness
        self._baselines = runs
        return runs

    def _train_baselines(self) -> dict:
        # the reference BN through its fused training path (reference/fused.py: the same
        # formula, torch's kernels), so that BN costs the run little more than no BN
        jobs = {"no_bn": None, "reference_bn": lambda c, d: _fused().FusedBatchNorm2d(c, d)}
        if not self._side_by_side():
            return {name: self._with_threads(self.threads, self._train_here, name, norm, self.progress)
                    for name, norm in jobs.items()}
        # on the CPU the two runs train side by side, each on half the cores: LeNet-5's small
        # operations use two threads poorly, so two one-thread runs finish well before two
        # two-thread runs one after the other (docs/calibration.md). The bar follows the longer run.
        self._tensors()  # built once, before the two threads want it
        stop = threading.Event()  # Ctrl-C or SIGTERM here ends both runs within 20 steps

        def watched(progress):
            def report(*args):
                if stop.is_set():
                    raise _Stopped()
                if progress is not None:
                    progress(*args)
            return report

        torch.set_num_threads(max(1, self.threads // 2))
        pool = ThreadPoolExecutor(max_workers=2)
        try:
            futures = {name: pool.submit(self._train_here, name, norm,
                                         watched(self.progress if name == "reference_bn" else None))
                       for name, norm in jobs.items()}
            return {name: f.result() for name, f in futures.items()}
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True)
            torch.set_num_threads(self.threads)

    def _side_by_side(self) -> bool:
        return self.device == "cpu" and self.threads >= 2

    def _with_threads(self, threads, fn, *args):
        if self.device == "cpu":
            torch.set_num_threads(threads)
        return fn(*args)

    # ------------------------------------------------------------------ the student's run
    def eval_norm(self, num_features, num_dims):
        # the layer that holds the student's trained state while the grader measures it
        return _ref().BatchNorm2d(num_features, num_dims)

    def _verify(self, weights, norms):
        """(val_loss, test_accuracy) measured here, with the reference BN holding the student's state."""
        model = lenet.LeNet5(norm=self.eval_norm, activation=self.cfg.activation)
        model.load_weight_state(weights)
        for name, state in zip(lenet.LeNet5.NORMS, norms):
            layer = getattr(model, name)
            for role in ("gamma", "beta", "moving_mean", "moving_var"):
                value = state.get(role)
                target = getattr(layer, role)
                if value is None or value.numel() != target.numel():
                    raise ValueError(f"{name}.{role} could not be read back from your trained network")
                with torch.no_grad():
                    target.copy_(value.reshape(target.shape).to(target.dtype))
        model.to(self.device)
        if self.device == "cpu":  # the job's share of the cores (batch.run sets self.threads)
            torch.set_num_threads(self.threads)
        _, _, va_x, va_y, te_x, te_y = self._tensors()
        val_loss, _ = lenet.evaluate(model, va_x, va_y, device=self.device)
        _, acc = lenet.evaluate(model, te_x, te_y, device=self.device)
        return val_loss, acc

    def run_student(self, zygote, path, limits, source=None):
        """(outcomes, runs, flags, student_output)."""
        if not self._announced:
            self._announced = True
            self.announce()
        base = self.baselines()
        c = self.cfg
        lim = replace(limits, call_seconds=c.time_limit_seconds,
                      total_seconds=c.time_limit_seconds + limits.load_seconds + 30)
        flags = []
        runs = dict(base)
        session = None
        from grader.sandbox.zygote import LoadFailed, open_loaded  # the one way a worker is started
        try:
            session = open_loaded(zygote, path, lim, threads=self.threads, source=source)
            tr_x, tr_y, va_x, va_y, _, _ = (t.cpu() for t in self._tensors())
            msg = {"op": "train", "train_x": tr_x, "train_y": tr_y, "val_x": va_x, "val_y": va_y,
                   "init": self.init, "activation": c.activation, "device": self.device,
                   "config": {k: getattr(c, k) for k in RUN_FIELDS}}
            on_event = self.progress.event if self.progress is not None else None
            resp = session.request(msg, "training LeNet-5 with your BatchNorm2d", on_event=on_event)
            if not resp.get("ok"):
                raise _RunFailed(f"your code raised {resp.get('error')}")
        except LoadFailed as e:
            return self._failed(e.message, runs), runs, flags, e.output + _close(e.session, limits)
        except (SandboxError, _RunFailed) as e:
            return self._failed(str(e), runs), runs, flags, _close(session, limits)
        output = _close(session, limits)
        reported_val = [float(v) for v in resp["val_loss"]]
        train_loss = [float(v) for v in resp["train_loss"]]
        notes = []
        try:
            val_loss, acc = self._verify(resp["weights"], resp["norms"])
        except (ValueError, KeyError, RuntimeError) as e:
            run = Run(None, train_loss, reported_val, round(float(resp["seconds"]), 2))
            runs["student_bn"] = run
            return self._failed(f"the trained network could not be evaluated: {e}", runs, run), runs, flags, output
        if reported_val and not math.isclose(val_loss, reported_val[-1], rel_tol=1e-3, abs_tol=1e-3):
            flags.append("training_mismatch")
            notes.append(f"your run reported a final validation loss of {reported_val[-1]:.4f}; the grader measured "
                         f"{val_loss:.4f} with the reference BN holding your trained state (your eval mode differs, "
                         "or the report was altered)")
        run = Run(acc, train_loss, reported_val, round(float(resp["seconds"]), 2),
                  val_accuracy=[float(v) for v in resp.get("val_accuracy", [])])
        runs["student_bn"] = run
        if self.progress is not None:
            self.progress.done(f"{'student_bn':<13} test accuracy {acc:.2%} ({run.seconds:.0f} s)")
        return self._score(run, base, val_loss, notes), runs, flags, output

    def _failed(self, reason, runs, run=None):
        runs.setdefault("student_bn", run or Run(None, [], [], 0.0))
        return [CheckOutcome(cid, False, f"not run: {reason}" if cid != "training.trains" else reason)
                for cid in CHECK_IDS]

    def _score(self, run, base, val_loss, notes):
        c = self.cfg
        ref_acc, no_acc = base["reference_bn"].test_accuracy, base["no_bn"].test_accuracy
        losses = run.train_loss + run.val_loss
        chance = math.log(10)
        curve = ", ".join(f"{v:.3f}" for v in run.train_loss)
        if not losses or not all(math.isfinite(v) for v in losses):
            bad = next((i for i, v in enumerate(run.train_loss) if not math.isfinite(v)), None)
            trains = CheckOutcome("training.trains", False,
                                  f"training diverged: the loss became NaN/inf (epoch {bad + 1 if bad is not None else '?'}); "
                                  "check that eps is inside the sqrt and that the variance cannot go negative",
                                  got=curve, notes=notes)
        elif run.train_loss[-1] >= 0.95 * chance:
            trains = CheckOutcome("training.trains", False,
                                  f"the training loss did not fall below chance level (ln 10 = {chance:.3f}): "
                                  f"{curve}; the reference BN run reached {base['reference_bn'].train_loss[-1]:.3f}",
                                  got=curve, notes=notes)
        else:
            trains = CheckOutcome("training.trains", True, f"training loss per epoch: {curve}; validation loss "
                                  f"measured by the grader {val_loss:.3f}", notes=notes)
        gap = ref_acc - run.test_accuracy
        if gap <= c.accuracy_margin:
            accuracy = CheckOutcome("training.accuracy", True, f"test accuracy {run.test_accuracy:.2%}; reference BN "
                                    f"{ref_acc:.2%} (allowed: {c.accuracy_margin:.0%} below)")
        else:
            accuracy = CheckOutcome("training.accuracy", False, f"test accuracy {run.test_accuracy:.2%} is "
                                    f"{gap:.2%} below the reference BN's {ref_acc:.2%} (allowed: {c.accuracy_margin:.0%}); "
                                    "the layer's own checks above show where it differs — a wrong running statistic "
                                    "or eval switch shows up here as a low test accuracy",
                                    expected=f">= {ref_acc - c.accuracy_margin:.2%}", got=f"{run.test_accuracy:.2%}")
        if run.test_accuracy > no_acc + c.min_gain_over_no_bn:
            beats = CheckOutcome("training.beats_no_bn", True, f"with your BN {run.test_accuracy:.2%}, without BN "
                                 f"{no_acc:.2%}")
        else:
            beats = CheckOutcome("training.beats_no_bn", False, f"with your BN {run.test_accuracy:.2%} does not beat "
                                 f"{no_acc:.2%} without BN (+{c.min_gain_over_no_bn:.0%} required)",
                                 expected=f"> {no_acc + c.min_gain_over_no_bn:.2%}", got=f"{run.test_accuracy:.2%}")
        return [trains, accuracy, beats]


class _RunFailed(Exception):
    pass


class _Stopped(Exception):
    """A baseline run ended because the other one failed or the grader is stopping."""


def _close(session, limits):
    return session.close(limits.output_bytes) if session is not None else ""
