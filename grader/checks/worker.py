"""The client of the sandboxed worker, as the checks see it (parent process).

Context sends requests (build a module, set its state, run a forward) to the worker through the
sandbox session and turns its replies into tensors, facts, or one of two exceptions: StudentError
(the submission's code raised: with the worker's evidence) and Failed (a check's verdict).
Nothing here trusts a verdict from the worker.
"""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks import oracle as O


class StudentError(Exception):
    """The submission's code raised (or returned something unusable) during a request."""

    def __init__(self, message, tb="", exception="", evidence=None, request=None):
        super().__init__(message)
        self.tb, self.exception = tb, exception
        self.evidence = evidence or {}  # handlers._evidence: frames, tensor shapes
        self.request = request or {}  # what the parent asked: op, mode, input shape, num_dims


class Failed(Exception):
    """Raised inside a check to end it with a failed outcome."""

    def __init__(self, message, expected="", got="", metrics=None, diagnosis=None, diagnoses=None):
        super().__init__(message)
        self.expected, self.got, self.metrics = expected, got, metrics
        self.diagnoses = list(diagnoses) if diagnoses else ([diagnosis] if diagnosis is not None else [])
        self.diagnosis = self.diagnoses[0] if self.diagnoses else None


class Context:
    def __init__(self, rubric, open_session, static_findings, cuda: bool, oracle=None):
        self.rubric = rubric
        # every expected value and variant output comes from here (checks/oracle.py): computed in
        # the full edition, read from a check pack in the student edition
        self.oracle = oracle if oracle is not None else O.computed()
        self._open = open_session
        self.session = None
        self.static = static_findings
        self.cuda = cuda
        self.check_id = ""
        self.ops_this_check = set()
        self.handles = 0
        self.dims = {}  # handle -> num_dims it was built with
        self.crash_probes = {}  # a crash's explanation, probed once per kind of crash (crashes.py)
        self.last_structure = {}  # of the module built last

    def start(self):
        self.session = self._open()

    def expect(self, op, label, variant=None, **inputs):
        """The oracle's answer for this check (an expected value); NotInPack where a pack has none."""
        return self.oracle.answer(self.check_id, label, op, variant, inputs)

    def simulator(self, op, label, **inputs):
        """simulate(variant) -> that variant's output on these inputs, None where there is none:
        what the mistake search replays."""
        check_id, oracle = self.check_id, self.oracle
        oracle.prepare(check_id, label, op, inputs)
        return lambda v: oracle.variant(check_id, label, op, v, inputs)

    def gen(self, salt="") -> torch.Generator:
        return I.generator(self.rubric.seed_for(self.check_id + salt))

    def tol(self, dtype: torch.dtype):
        name = str(dtype).replace("torch.", "")
        return self.rubric.tolerance(self.rubric.spec(self.check_id), name)

    def call(self, msg, what, request=None):
        resp = self.session.request(msg, what)
        self.ops_this_check.update(resp.get("builtin_ops", []))
        if "crash" in resp or not resp.get("ok"):
            raise StudentError(resp.get("error", "unknown error"), resp.get("traceback", ""), resp.get("exception", ""),
                               evidence=resp.get("crash"), request=request or {"op": msg.get("op")})
        return resp

    def build(self, C, num_dims, **kwargs):
        self.handles += 1
        handle = f"m{self.handles}"
        args = f"BatchNorm2d({C}, {num_dims}{''.join(f', {k}={v}' for k, v in kwargs.items())})"
        resp = self.call({"op": "build", "handle": handle, "args": [C, num_dims], "kwargs": kwargs}, f"building {args}",
                         request={"op": "build", "num_dims": num_dims, "C": C, "kwargs": kwargs})
        self.dims[handle] = num_dims
        self.last_structure = resp["structure"]
        return handle, resp["structure"]

    def affine_module(self, gen, C, num_dims, device=None, **kwargs):
        """A fresh module with seeded gamma and beta: (handle, gamma, beta), template-shaped."""
        gamma, beta = I.make_affine(gen, C)
        g, b = I.shaped(gamma, num_dims), I.shaped(beta, num_dims)
        handle, _ = self.build(C, num_dims, **kwargs)
        self.set(handle, device=device, gamma=g, beta=b)
        return handle, g, b

    def set(self, handle, dtype=None, device=None, **values):
        msg = {"op": "set", "handle": handle, "values": {k: v for k, v in values.items() if v is not None}}
        if dtype:
            msg["dtype"] = dtype
        if device:
            msg["device"] = device
        return self.call(msg, "setting parameters", request={"op": "set"})["structure"]

    def forward(self, handle, x, mode="train", grad=None, weights=None, device=None, check_output=True):
        grad = (mode == "train") if grad is None else grad
        msg = {"op": "forward", "handle": handle, "x": x, "mode": mode, "grad": grad}
        if weights is not None:
            msg["weights"] = weights
        if device:
            msg["device"] = device
        what = f"forward in {mode} mode on an input of shape {tuple(x.shape)}"
        request = {"op": "forward", "mode": mode, "grad": grad, "shape": tuple(x.shape), "dtype": str(x.dtype),
                   "num_dims": self.dims.get(handle), "backward": weights is not None}
        resp = self.call(msg, what, request=request)
        y = resp.get("y")
        if y is None:
            raise StudentError("forward returned nothing", request=request)
        if not check_output:  # checks about state or hygiene judge that, not the output
            return resp
        if tuple(y.shape) != tuple(x.shape):
            raise Failed(f"output shape {tuple(y.shape)} differs from the input's {tuple(x.shape)}",
                         expected=str(tuple(x.shape)), got=str(tuple(y.shape)))
        if y.dtype != x.dtype:
            raise Failed(f"output dtype {y.dtype} differs from the input's {x.dtype}", expected=str(x.dtype),
                         got=str(y.dtype), diagnosis=M.CATALOGUE["wrong_dtype"])
        return resp
