"""The oracle: every expected value and every formula variant's output the checks use (parent
process; both editions).

The checks never compute a BatchNorm formula themselves: they ask the oracle, naming the call by
(check id, label, op) and, for a formula variant, the variant. The label says which call of the
check this is (which input, which path: "4d/(2, 5, 3, 7)", "float32/2d", "probe/square/train");
the inputs travel with the question.
- The full edition's oracle (checks/computed.py) computes the answers with reference/ and the
  variants of checks/variants.py, and can record them.
- The student edition's oracle (PackOracle here) answers from a check pack (grader/pack.py): it
  checks that the inputs it is asked about are the pack's (the student's torch made the same
  ones) and never computes anything. A question the pack does not hold is NotInPack: the check
  says it cannot be checked with this pack.

Ops (inputs -> answer):
  expected.train  x, gamma, beta, eps                     the reference's training output
  expected.eval   x, mean, var, gamma, beta, eps          the reference's output with given stats
  train           x, gamma, beta, eps           variant   a variant's training output
  eval            x, gamma, beta, mean, var, eps, momentum  variant's eval output
  running         xs, momentum                  variant   (moving_mean, moving_var) after each step, (S, C)
  grads           x, gamma, beta, w, eps        variant   (dx, dgamma, dbeta) of sum(y·w)
  state_mean      x, momentum                   axes      a fresh moving_mean after one step over these axes
  lenet           init, xs, ys, x_eval, activation  "biased"/"unbiased": (losses, weights, eval logits)
"""
from __future__ import annotations

import json

import torch

from grader.checks.mistakes import Variant, delta
from grader.errors import UsageError

# inputs are the pack's when they agree this closely: the same seeded draws on another CPU may
# differ in the last bits of a float64 reduction, never more
INPUT_RTOL, INPUT_ATOL = 1e-6, 1e-9


class NotInPack(Exception):
    """The pack holds no answer to this question (student edition)."""


def variant_key(v) -> str:
    """A stable text key of a variant: its fields that differ from the course's formula."""
    if v is None:
        return ""
    if isinstance(v, Variant):
        return json.dumps({"v": {k: list(x) if isinstance(x, tuple) else x for k, x in delta(v).items()}},
                          sort_keys=True)
    if isinstance(v, dict):
        return json.dumps({"f": {k: list(x) if isinstance(x, tuple) else x for k, x in v.items()}}, sort_keys=True)
    return json.dumps(v)


def entry_key(check_id: str, label: str, op: str) -> str:
    return f"{check_id}|{label}|{op}"


def same_inputs(a, b) -> bool:
    """The inputs of a question agree with the stored ones (structure, scalars, tensors closely)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or tuple(a.shape) != tuple(b.shape):
            return False
        if a.dtype.is_floating_point:
            return bool(torch.allclose(a.double(), b.double(), rtol=INPUT_RTOL, atol=INPUT_ATOL))
        return bool(torch.equal(a.to(b.dtype), b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_inputs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_inputs(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-12 * max(1, abs(b))
    return a == b


def as_answer(op, stored):
    # the pack keeps lists where the computation returned tuples
    if stored is None or isinstance(stored, torch.Tensor) or op in ("expected.train", "expected.eval"):
        return stored
    return tuple(stored)


class Oracle:
    """What the checks ask. answer(): an expected value (raises NotInPack where there is none);
    variant(): a variant's output, None where it has none; prepare(): a check is about to try
    variants of this call (the recording oracle computes every candidate then)."""

    def answer(self, check_id, label, op, variant, inputs):
        raise NotImplementedError

    def variant(self, check_id, label, op, variant, inputs):
        raise NotImplementedError

    def prepare(self, check_id, label, op, inputs):
        pass


class PackOracle(Oracle):
    """Answers from a check pack, never computing (the student edition's oracle)."""

    def __init__(self, pack):
        self.pack = pack
        self._verified = {}  # entry key -> None (inputs agree) or why not

    def _entry(self, check_id, label, op, inputs):
        key = entry_key(check_id, label, op)
        entry = self.pack.entries.get(key)
        if entry is None:
            raise NotInPack(f"this pack ({self.pack.describe()}) holds no expected values for {label} ({op})")
        if key not in self._verified:
            self._verified[key] = None if same_inputs(inputs, entry["inputs"]) else (
                f"the inputs of {label} differ from the pack's: the pack was made with torch "
                f"{self.pack.meta.get('torch')}, this is torch {torch.__version__}, or for another seed")
        if self._verified[key]:
            raise NotInPack(self._verified[key])
        return entry

    def answer(self, check_id, label, op, variant, inputs):
        entry = self._entry(check_id, label, op, inputs)
        vkey = variant_key(variant)
        if vkey not in entry["out"] or entry["out"][vkey] is None:
            raise NotInPack(f"this pack ({self.pack.describe()}) holds no expected values for {label} ({op})")
        return as_answer(op, entry["out"][vkey])

    def variant(self, check_id, label, op, variant, inputs):
        try:
            entry = self._entry(check_id, label, op, inputs)
        except NotInPack:
            return None  # the search goes on without this candidate
        return as_answer(op, entry["out"].get(variant_key(variant)))


def computed(rubric=None) -> Oracle:
    """The full edition's oracle; the student edition has none and says how to grade instead."""
    try:
        from grader.checks.computed import ComputedOracle
    except ImportError:
        raise StudentEdition("this is the student edition of bn-grade: it checks against a check pack; run "
                             "bn-grade batchnorm.py --pack FILE.bnpack (your course publishes the pack with "
                             "the template)") from None
    return ComputedOracle()


class StudentEdition(UsageError):
    """A full-edition feature was asked of the student edition."""
