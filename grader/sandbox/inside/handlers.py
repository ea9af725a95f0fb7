"""Requests a sandboxed worker answers about the student's module (sandboxed worker only).

build a module, set its parameters, run a forward (and backward) on an input the parent chose,
a few LeNet-5 SGD steps, a training run; each returns tensors and plain facts. Nothing here
compares with an expected value: every verdict is the parent's.
"""
import inspect
import linecache
import os

import torch
from torch.overrides import TorchFunctionMode

from .wire import ROLE_NAMES

try:
    import bn_lenet as lenet  # inside the sandbox the harness is mounted beside this package
except ImportError:
    from grader.training import lenet  # unconfined: the harness only, no BatchNorm in it

# aten ops that compute a normalisation for the student; substrings of the op's name
BUILTIN_NORM_PATTERNS = ("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm")
MODULE_NAME = "submission"


class _BuiltinNormRecorder(TorchFunctionMode):
    # Every Python path to torch's normalisation (nn.BatchNorm2d, F.batch_norm, aliases,
    # getattr with strings, torch.ops.aten.*) passes a torch-function mode, whatever its
    # spelling. (A TorchDispatchMode would see aten ops directly, but its first use imports
    # ~900 modules, 2.3 s here.) The autograd graph is walked as a second line: see _graph_ops.
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if any(p in name for p in BUILTIN_NORM_PATTERNS):
            self.seen.add(name)
        return func(*args, **(kwargs or {}))


def _graph_ops(y):
    # autograd nodes such as NativeBatchNormBackward0 betray a built-in normalisation even
    # if the torch-function mode was bypassed. Only torch's own C++ nodes count (their class
    # lives in builtins): a student's autograd.Function, whatever it is called, has a
    # BackwardCFunction node and is the student's code.
    found, seen, stack = set(), set(), [y.grad_fn]
    while stack and len(seen) < 100000:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        cls = type(node)
        name = cls.__name__
        torch_own = cls.__module__ == "builtins" and not isinstance(node, torch.autograd.function.BackwardCFunction)
        if torch_own and any(p.replace("_", "") in name.lower() for p in BUILTIN_NORM_PATTERNS):
            found.add(name)
        stack.extend(n for n, _ in node.next_functions)
    return found


def _shape_of(v):
    return list(v.shape) if isinstance(v, torch.Tensor) else None


def _evidence(exc):
    # what the parent needs to explain a crash without guessing: the exception, the student's
    # frames (line numbers and source), and the shapes of the tensors the failing line could see
    frames, last = [], None
    tb = exc.__traceback__
    while tb is not None:
        f = tb.tb_frame
        if f.f_globals.get("__name__") == MODULE_NAME:
            frames.append({"line": tb.tb_lineno, "function": f.f_code.co_name,
                           "code": linecache.getline(f.f_code.co_filename, tb.tb_lineno).strip(),
                           "file": os.path.basename(f.f_code.co_filename)})
            last = f
        tb = tb.tb_next
    tensors = {}
    if last is not None:
        for name, v in list(last.f_locals.items())[:50]:
            if _shape_of(v) is not None:
                tensors[name] = _shape_of(v)
            elif isinstance(v, torch.nn.Module):
                for a, t in list(vars(v).items())[:50]:
                    if _shape_of(t) is not None:
                        tensors[f"{name}.{a}"] = _shape_of(t)
                for a, t in list(v.named_parameters(recurse=False))[:20] + list(v.named_buffers(recurse=False))[:20]:
                    tensors[f"{name}.{a}"] = _shape_of(t)
    return {"exception": type(exc).__name__, "message": str(exc)[:1000], "frames": frames[-4:], "tensors": tensors}


class _Crashed(Exception):
    # carries the student's exception out of a handler, with its evidence, as a reply
    def __init__(self, exc):
        super().__init__(str(exc))
        self.evidence = _evidence(exc)


def _crash_reply(c):
    e = c.evidence
    where = "".join(f'  File "{f["file"]}", line {f["line"]}, in {f["function"]}\n    {f["code"]}\n'
                    for f in e["frames"])
    return {"crash": e, "error": f'{e["exception"]}: {e["message"]}'[:2000], "exception": e["exception"],
            "traceback": (where + f'{e["exception"]}: {e["message"]}')[-4000:]}


class SubmissionError(Exception):
    """A problem with the submission, reported to the parent as text."""


def _resolve(model, role):
    for name in ROLE_NAMES[role]:
        try:
            value = getattr(model, name, None)
        except Exception:
            value = None
        if isinstance(value, torch.Tensor):
            return name, value
    return None, None


def _none_attr(model, role):
    # an attribute set to None in __init__ (filled from the first batch): its name, else None
    for name in ROLE_NAMES[role]:
        if name in vars(model) and vars(model)[name] is None:
            return name
    return None


def _plain(t):
    return None if t is None else t.detach().to("cpu", copy=True)


def _describe(model):
    params = dict(model.named_parameters(recurse=False))
    buffers = dict(model.named_buffers(recurse=False))
    roles = {}
    for role in ROLE_NAMES:
        name, t = _resolve(model, role)
        if t is None:
            roles[role] = {"name": None, "none_attr": _none_attr(model, role)}
            continue
        roles[role] = {
            "name": name,
            "value": _plain(t),
            "is_parameter": isinstance(t, torch.nn.Parameter),
            "is_buffer": name in buffers,
            "in_parameters": any(p is t for p in model.parameters()),
            "requires_grad": bool(t.requires_grad),
            "has_graph": t.grad_fn is not None,
            "device": str(t.device),
        }
    attrs = {}
    for a in ("momentum", "eps"):
        v = getattr(model, a, None)
        attrs[a] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    try:
        forward_params = list(inspect.signature(type(model).forward).parameters)[1:]
    except (TypeError, ValueError):
        forward_params = []
    return {"roles": roles, "parameters": sorted(params), "buffers": sorted(buffers), "attrs": attrs,
            "training": bool(model.training), "forward_params": forward_params}


def _build(req, cls, models, emit):
    rec = _BuiltinNormRecorder()
    try:
        with rec:
            model = cls(*req["args"], **req.get("kwargs", {}))
    except Exception as e:
        return _crash_reply(_Crashed(e))
    if not isinstance(model, torch.nn.Module):
        raise SubmissionError("BatchNorm2d(...) did not return an nn.Module")
    models[req["handle"]] = model
    return {"structure": _describe(model), "builtin_ops": sorted(rec.seen)}


def _set(req, cls, models, emit):
    model = models[req["handle"]]
    if req.get("dtype"):
        model.to(getattr(torch, req["dtype"]))
    if req.get("device"):
        model.to(req["device"])
    for role, value in req.get("values", {}).items():
        name, t = _resolve(model, role)
        if t is None and _none_attr(model, role):
            # state the student fills from the first batch: the parent sets it as a batch would
            setattr(model, _none_attr(model, role), value.clone())
            continue
        if t is None:
            raise SubmissionError(f"the module has no attribute for {role} (looked for {', '.join(ROLE_NAMES[role])})")
        if t.numel() != value.numel():
            raise SubmissionError(f"{name} has {t.numel()} elements; expected {value.numel()}")
        with torch.no_grad():
            t.copy_(value.reshape(t.shape).to(t.dtype))
    return {"structure": _describe(model)}


def _forward(req, cls, models, emit):
    try:
        return _forward_inner(req, cls, models)
    except _Crashed as c:
        return _crash_reply(c)


def _forward_inner(req, cls, models):
    model = models[req["handle"]]
    device = req.get("device", "cpu")
    x = req["x"].to(device)
    weights = req.get("weights")
    grad = req.get("grad", True)
    leaf = None
    if grad:
        # as in a network, BN's input is a conv's output: it requires grad and is not a leaf, so
        # in-place ops on it are legal for autograd (an in-place submission is judged by its
        # values, not by a crash) and numpy() on it fails as it would in training
        leaf = x.requires_grad_(True)
        x = leaf.clone()
    x_before = x.detach().clone()
    model.train(req["mode"] == "train")
    rec = _BuiltinNormRecorder()
    grad_ctx = torch.enable_grad() if grad else torch.no_grad()
    out = {}
    with rec:
        try:
            with grad_ctx:
                y = model(x)
        except Exception as e:
            raise _Crashed(e) from None
        if not isinstance(y, torch.Tensor):
            raise SubmissionError(f"forward returned {type(y).__name__}, not a tensor")
        out["y"] = _plain(y)
        graph_ops = _graph_ops(y)
        out["y_device"] = str(y.device)
        if weights is not None:
            if not y.requires_grad:
                raise SubmissionError("the output does not require grad: the computation left the autograd graph")
            _, gamma = _resolve(model, "gamma")
            _, beta = _resolve(model, "beta")
            targets = [leaf] + [t for t in (gamma, beta) if t is not None and t.requires_grad]
            loss = (y * weights.to(device=y.device, dtype=y.dtype)).sum()
            try:
                grads = torch.autograd.grad(loss, targets, allow_unused=True)
            except Exception as e:  # a hand-written backward runs here
                raise _Crashed(e) from None
            out["dx"] = _plain(grads[0])
            names = [n for n, t in (("dgamma", gamma), ("dbeta", beta)) if t is not None and t.requires_grad]
            for n, g in zip(names, grads[1:]):
                out[n] = _plain(g)
    out["input_modified"] = not torch.equal(x.detach(), x_before)
    out["structure"] = _describe(model)
    out["builtin_ops"] = sorted(rec.seen | graph_ops)
    return out


def _norms(model):
    # each norm layer's state, found by role (the student may keep it outside state_dict)
    out = []
    for name in lenet.LeNet5.NORMS:
        layer = getattr(model, name)
        out.append({role: _plain(_resolve(layer, role)[1]) for role in ROLE_NAMES})
    return out


def _lenet(cls, req):
    model = lenet.LeNet5(norm=lambda c, d: cls(c, d), activation=req.get("activation", "sigmoid"))
    model.load_weight_state(req["init"])
    return model


def _lenet_steps(req, cls, models, emit):
    # a few SGD steps of LeNet-5 with the student's layer, for the parent to replay with the
    # reference: catches parameters the optimiser never sees and train/eval switching
    rec = _BuiltinNormRecorder()
    try:
        with rec:
            model = _lenet(cls, req)
            losses = lenet.plain_sgd_steps(model, req["xs"], req["ys"], req["lr"])
            model.eval()
            with torch.no_grad():
                logits = model(req["x_eval"])
    except Exception as e:
        return _crash_reply(_Crashed(e))
    params = {id(p) for p in model.parameters()}
    registered = [all(id(_resolve(getattr(model, n), r)[1]) in params for r in ("gamma", "beta"))
                  for n in lenet.LeNet5.NORMS]
    return {"losses": torch.tensor(losses, dtype=torch.float64), "weights": model.weight_state(),
            "norms": _norms(model), "registered": registered, "eval_logits": _plain(logits),
            "builtin_ops": sorted(rec.seen)}


def _train(req, cls, models, emit):
    cfg = req["config"]
    device = req.get("device", "cpu")
    # the data comes in the request: a worker with its own uid cannot read the grader's cache
    train_x, train_y, val_x, val_y = req["train_x"], req["train_y"], req["val_x"], req["val_y"]
    if device != "cpu":  # resident on the GPU: no host-to-device copy per batch
        train_x, train_y, val_x, val_y = (t.to(device) for t in (train_x, train_y, val_x, val_y))
    model = _lenet(cls, req).to(device)

    def progress(name, epoch, epochs, step, steps, loss, elapsed):
        emit({"event": "progress", "name": name, "epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
              "loss": loss, "elapsed": elapsed})
    hist = lenet.train(model, train_x, train_y, val_x, val_y, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                       optimizer=cfg["optimizer"], lr=cfg["lr"], momentum=cfg["momentum"],
                       weight_decay=cfg["weight_decay"], seed=cfg["seed"], device=device, progress=progress,
                       name="student_bn")
    return {"weights": {k: _plain(v) for k, v in model.weight_state().items()}, "norms": _norms(model),
            "train_loss": hist["train_loss"], "val_loss": hist["val_loss"], "val_accuracy": hist["val_accuracy"],
            "seconds": hist["seconds"]}


HANDLERS = {"build": _build, "set": _set, "forward": _forward, "lenet_steps": _lenet_steps, "train": _train}
