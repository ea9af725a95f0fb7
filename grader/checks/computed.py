"""The full edition's oracle: expected values from reference/, variant outputs from
checks/variants.py, and a recording oracle that keeps every answer for a check pack (parent
process, full edition only: the student edition ships without this module).

What each op computes is listed in checks/oracle.py. The recording oracle answers as the computing
one does and keeps (inputs, answers) per (check id, label, op); when a check prepares to try
variants of a call, it computes every candidate the mistake search could try there (checks/
search.py candidates()), so a pack holds them whatever the submission does.
"""
from __future__ import annotations

import torch

from grader.checks import search as S
from grader.checks import variants as F
from grader.checks.mistakes import Variant
from grader.checks.oracle import Oracle, entry_key, variant_key
from reference import batchnorm as ref
from grader.training import lenet


def _grads(v, x, gamma, beta, w, eps):
    x = x.detach().clone().requires_grad_(True)
    g = gamma.detach().clone().requires_grad_(True)
    b = beta.detach().clone().requires_grad_(True)
    y = F.train_forward(v, x, g, b, eps)
    grads = torch.autograd.grad((y * w).sum(), [x, g, b], allow_unused=True)
    return tuple(torch.zeros_like(t) if gr is None else gr for t, gr in zip((x, g, b), grads))


def _running(v, xs, momentum):
    # (S, C) moving_mean and moving_var after each of the steps, from a fresh module
    mm, mv = F.running_start(v, xs[0].shape[1])
    means, vars_ = [], []
    for i, xi in enumerate(xs, start=1):
        mm, mv = F.running_update(v, mm, mv, xi, momentum, step=i)
        means.append(mm)
        vars_.append(mv)
    return torch.stack(means), torch.stack(vars_)


def _state_mean(fields, x, momentum):
    # a fresh (1, C, ...) moving_mean after one step whose batch mean was taken over these axes
    start = torch.zeros((1, x.shape[1]) + (1,) * (x.dim() - 2), dtype=torch.float64)
    return momentum * start + (1 - momentum) * x.mean(dim=tuple(fields["axes"]), keepdim=True)


def _lenet(kind, init, xs, ys, x_eval, activation, lr):
    model = lenet.LeNet5(norm=lambda c, d: ref.BatchNorm2d(c, d, unbiased_running_var=kind == "unbiased"),
                         activation=activation)
    model.load_weight_state(init)
    losses = lenet.plain_sgd_steps(model, xs, ys, lr)
    model.eval()
    with torch.no_grad():
        logits = model(x_eval)
    return torch.tensor(losses, dtype=torch.float64), model.weight_state(), logits


def compute(op, variant, inputs):
    i = inputs
    if op == "expected.train":
        x = i["x"]
        return ref.normalize(x, *ref.batch_stats(x), i["gamma"], i["beta"], i["eps"])
    if op == "expected.eval":
        return ref.normalize(i["x"], i["mean"], i["var"], i["gamma"], i["beta"], i["eps"])
    if op == "train":
        return F.train_forward(variant, i["x"], i["gamma"], i["beta"], i["eps"])
    if op == "eval":
        return F.eval_forward(variant, i["x"], i["gamma"], i["beta"], i["mean"], i["var"], i["eps"], i["momentum"])
    if op == "running":
        return _running(variant, i["xs"], i["momentum"])
    if op == "grads":
        return _grads(variant, i["x"], i["gamma"], i["beta"], i["w"], i["eps"])
    if op == "state_mean":
        return _state_mean(variant, i["x"], i["momentum"])
    if op == "lenet":
        return _lenet(variant, i["init"], i["xs"], i["ys"], i["x_eval"], i["activation"], i["lr"])
    raise ValueError(f"unknown oracle op {op}")


class ComputedOracle(Oracle):
    def answer(self, check_id, label, op, variant, inputs):
        return compute(op, variant, inputs)

    def variant(self, check_id, label, op, variant, inputs):
        return compute(op, variant, inputs)  # a variant that cannot run raises: the search skips it


def candidates(op, inputs, accepted_var):
    """Every variant the checks and the mistake search could ask of this call."""
    bases = [Variant(running_var=k) for k in accepted_var]
    if op == "train":
        return [Variant()] + S.candidates("train", inputs["x"].dim())
    if op == "grads":
        return [Variant()] + S.candidates("grad", inputs["x"].dim())
    if op == "eval":
        return [Variant()] + S.candidates("eval", inputs["x"].dim())
    if op == "running":
        out = list(bases) + S.candidates("running_mean", 0, accepted_var=accepted_var)
        out += S.candidates("running_var", 0, bases=bases, accepted_var=accepted_var)
        return list(dict.fromkeys(out))
    if op == "state_mean":
        return [fields for _, fields in S.axes_options(inputs["x"].dim()) if fields["keepdim"]]
    if op == "lenet":
        return list(accepted_var)
    return []


class RecordingOracle(ComputedOracle):
    """Computes as the full edition does and keeps every answer: {entry key: {inputs, out}}."""

    def __init__(self, accepted_var):
        self.accepted_var = tuple(accepted_var)
        self.entries = {}

    def _entry(self, check_id, label, op, inputs):
        key = entry_key(check_id, label, op)
        if key not in self.entries:
            self.entries[key] = {"inputs": inputs, "out": {}}
        return self.entries[key]

    def _keep(self, entry, op, variant, inputs):
        k = variant_key(variant)
        if k not in entry["out"]:
            try:
                entry["out"][k] = compute(op, variant, inputs)
            except (ValueError, RuntimeError, IndexError):
                entry["out"][k] = None  # the variant cannot run on this input: the search skips it
        return entry["out"][k]

    def answer(self, check_id, label, op, variant, inputs):
        out = self._keep(self._entry(check_id, label, op, inputs), op, variant, inputs)
        if out is None:
            return compute(op, variant, inputs)  # raises as the computing oracle would
        return out

    def variant(self, check_id, label, op, variant, inputs):
        out = self._keep(self._entry(check_id, label, op, inputs), op, variant, inputs)
        if out is None:
            raise ValueError("this variant cannot run on this input")
        return out

    def prepare(self, check_id, label, op, inputs):
        entry = self._entry(check_id, label, op, inputs)
        for v in candidates(op, inputs, self.accepted_var):
            self._keep(entry, op, v, inputs)
