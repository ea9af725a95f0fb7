"""The checks (parent process).

Each check asks the sandboxed worker to build modules and run them on inputs from
checks/inputs.py, computes the expected values with reference/, compares, and on a mismatch
replays the inputs through the known mistakes (checks/mistakes.py) to name the likely one.
A check never trusts a verdict from the worker: only tensors and facts about the module.
"""
from __future__ import annotations

import time
import traceback

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.compare import close, compare, fmt
from grader.checks.static import Finding
from grader.results import CheckOutcome
from grader.rubric import Tolerance
from grader.sandbox.inside.handlers import ROLE_NAMES
from grader.sandbox.zygote import SandboxError
from reference import batchnorm as ref
from reference import lenet

CHECKS = {}  # id -> function(ctx) -> CheckOutcome, in the order they run
NUMERIC = ("forward.train.4d", "forward.train.2d", "hyperparams.eps", "running_stats", "hyperparams.momentum",
           "eval.forward", "gradients", "device.cuda")
FORWARD_MISTAKES = ("unbiased_var_in_norm", "eps_outside_sqrt", "eps_missing", "wrong_axes", "wrong_axes_instance",
                    "no_keepdim", "gamma_beta_ignored", "gamma_beta_swapped")
ADVISORY_FINDINGS = ("fragile_variance", "not_buffers", "ignores_training_flag")
RUNNING_MISTAKES = ("reversed_momentum", "running_overwritten", "running_not_updated", "std_in_running_var")


def check(check_id):
    def register(fn):
        CHECKS[check_id] = fn
        return fn
    return register


class StudentError(Exception):
    """The submission's code raised (or returned something unusable) during a request."""

    def __init__(self, message, tb="", exception=""):
        super().__init__(message)
        self.tb, self.exception = tb, exception


class Failed(Exception):
    """Raised inside a check to end it with a failed outcome."""

    def __init__(self, message, expected="", got="", metrics=None, diagnosis=None):
        super().__init__(message)
        self.expected, self.got, self.metrics, self.diagnosis = expected, got, metrics, diagnosis


class Context:
    def __init__(self, rubric, open_session, static_findings: list[Finding], cuda: bool):
        self.rubric = rubric
        self._open = open_session
        self.session = None
        self.static = static_findings
        self.cuda = cuda
        self.check_id = ""
        self.ops_this_check = set()
        self.handles = 0
        self.facts = {}  # what the checks learned, e.g. which running variance was found

    def start(self):
        self.session = self._open()

    def gen(self, salt="") -> torch.Generator:
        return I.generator(self.rubric.seed_for(self.check_id + salt))

    def tol(self, dtype: torch.dtype):
        name = str(dtype).replace("torch.", "")
        return self.rubric.tolerance(self.rubric.spec(self.check_id), name)

    def call(self, msg, what):
        resp = self.session.request(msg, what)
        self.ops_this_check.update(resp.get("builtin_ops", []))
        if not resp.get("ok"):
            raise StudentError(resp.get("error", "unknown error"), resp.get("traceback", ""), resp.get("exception", ""))
        return resp

    def build(self, C, num_dims, **kwargs):
        self.handles += 1
        handle = f"m{self.handles}"
        args = f"BatchNorm2d({C}, {num_dims}{''.join(f', {k}={v}' for k, v in kwargs.items())})"
        resp = self.call({"op": "build", "handle": handle, "args": [C, num_dims], "kwargs": kwargs}, f"building {args}")
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
        return self.call(msg, "setting parameters")["structure"]

    def forward(self, handle, x, mode="train", grad=None, weights=None, device=None, check_output=True):
        grad = (mode == "train") if grad is None else grad
        msg = {"op": "forward", "handle": handle, "x": x, "mode": mode, "grad": grad}
        if weights is not None:
            msg["weights"] = weights
        if device:
            msg["device"] = device
        what = f"forward in {mode} mode on an input of shape {tuple(x.shape)}"
        resp = self.call(msg, what)
        y = resp.get("y")
        if y is None:
            raise StudentError("forward returned nothing")
        if not check_output:  # checks about state or hygiene judge that, not the output
            return resp
        if tuple(y.shape) != tuple(x.shape):
            diag = M.CATALOGUE["no_keepdim"] if y.dim() != x.dim() or y.numel() != x.numel() else None
            raise Failed(f"output shape {tuple(y.shape)} differs from the input's {tuple(x.shape)}",
                         expected=str(tuple(x.shape)), got=str(tuple(y.shape)), diagnosis=diag)
        if y.dtype != x.dtype:
            raise Failed(f"output dtype {y.dtype} differs from the input's {x.dtype}", expected=str(x.dtype),
                         got=str(y.dtype), diagnosis=M.CATALOGUE["wrong_dtype"])
        return resp


def _stat(structure, role, C):
    r = structure["roles"][role]
    if r.get("name") is None:
        raise Failed(f"the module has no {role} (looked for {', '.join(ROLE_NAMES[role])})")
    v = r["value"]
    if v.numel() != C:
        # it had C values when built (structure checks): the batch statistics had another shape
        raise Failed(f"after a training step self.{r['name']} has shape {tuple(v.shape)}: expected {C} values, "
                     "one per channel", expected=f"{C} values", got=str(tuple(v.shape)),
                     diagnosis=M.CATALOGUE["wrong_axes"])
    return v.reshape(C).to(torch.float64)



def _mismatch(what, got, expected, tol, channel_dim=1, candidates=(), simulate=None, shape_note=""):
    """Compare; on failure raise Failed with metrics and, if one matches, a named mistake."""
    ok, m = compare(got, expected, tol.rtol, tol.atol, channel_dim)
    if ok:
        return m
    diag = M.diagnose(candidates, simulate, got, tol.rtol, tol.atol) if simulate else None
    c = m.worst_channel
    digits = 9 if m.max_rel < 1e-3 else 5  # a tiny mismatch needs the digits where it shows
    if c is not None and channel_dim is not None and got.dim() > channel_dim:
        exp_s = fmt(expected.select(channel_dim, c), digits=digits)
        got_s = fmt(got.reshape(expected.shape).select(channel_dim, c), digits=digits)
        where = f" (worst: channel {c})"
    else:
        exp_s, got_s, where = fmt(expected, digits=digits), fmt(got, digits=digits), ""
    msg = (f"{what}{shape_note}: {m.mismatched} of {m.total} values off; max abs error {m.max_abs:.3g}, "
           f"max rel error {m.max_rel:.3g}{where}; allowed |Δ| <= {tol.atol:g} + {tol.rtol:g}·|expected|")
    raise Failed(msg, expected=exp_s, got=got_s, metrics=m, diagnosis=diag)


def _shape4(C):
    # W != C, and W == C: a (C,) statistic broadcasts silently only in the second
    return [(2, C, 3, C + 2), (3, C, 2, C)]


# ---------------------------------------------------------------------------- structure

def _structure(ctx, num_dims):
    C = I.num_channels(ctx.gen())
    _, s = ctx.build(C, num_dims)
    want = (1, C) if num_dims == 2 else (1, C, 1, 1)
    notes = []
    for role, init in (("gamma", 1.0), ("beta", 0.0)):
        r = s["roles"][role]
        if r["name"] is None:
            raise Failed(f"no attribute {role} (the template names it self.{role})", expected=f"nn.Parameter of shape {want}",
                         got="missing")
        if not r["is_parameter"] or not r["in_parameters"]:
            raise Failed(f"self.{r['name']} is a plain tensor, not an nn.Parameter registered on the module",
                         expected="nn.Parameter", got="torch.Tensor", diagnosis=M.CATALOGUE["params_not_parameters"])
        if tuple(r["value"].shape) != want:
            raise Failed(f"self.{r['name']} has shape {tuple(r['value'].shape)}", expected=str(want),
                         got=str(tuple(r["value"].shape)), diagnosis=M.CATALOGUE["wrong_param_shape"])
        if not bool((r["value"] == init).all()):
            raise Failed(f"self.{r['name']} does not start at {init:g}", expected=f"all {init:g}", got=fmt(r["value"]),
                         diagnosis=M.CATALOGUE["wrong_init"])
        if r["name"] != role:
            notes.append(f"{role} found as self.{r['name']} (the template calls it {role})")
    for role, init in (("moving_mean", 0.0), ("moving_var", 1.0)):
        r = s["roles"][role]
        if r["name"] is None:
            raise Failed(f"no attribute {role} (the template names it self.{role})", expected=f"tensor of shape {want}",
                         got="missing")
        v = r["value"]
        if v.numel() != C:
            raise Failed(f"self.{r['name']} has shape {tuple(v.shape)}", expected=str(want), got=str(tuple(v.shape)),
                         diagnosis=M.CATALOGUE["wrong_param_shape"])
        if tuple(v.shape) != want:
            notes.append(f"self.{r['name']} has shape {tuple(v.shape)}; the template uses {want}")
        if not bool((v == init).all()):
            raise Failed(f"self.{r['name']} does not start at {init:g}", expected=f"all {init:g}", got=fmt(v),
                         diagnosis=M.CATALOGUE["wrong_init"])
    return CheckOutcome(ctx.check_id, True, f"BatchNorm2d({C}, {num_dims}) has gamma, beta, moving_mean, moving_var "
                        f"of shape {want} with the template's initial values", notes=notes)


@check("structure.4d")
def structure_4d(ctx):
    return _structure(ctx, 4)


@check("structure.2d")
def structure_2d(ctx):
    return _structure(ctx, 2)


# ---------------------------------------------------------------------------- forward, train mode

def _train_forward(ctx, num_dims, eps=None):
    gen = ctx.gen()
    C = I.num_channels(gen)
    kwargs = {} if eps is None else {"eps": eps}
    handle, g, b = ctx.affine_module(gen, C, num_dims, **kwargs)
    e = 1e-5 if eps is None else eps
    shapes = _shape4(C) if num_dims == 4 else [(2, C), (5, C)]
    tol = ctx.tol(torch.float32)
    for shape in shapes:
        x = I.make_x(gen, shape, torch.float32)
        y = ctx.forward(handle, x)["y"]
        x64 = x.double()
        expected = ref.normalize(x64, *ref.batch_stats(x64), g, b, e)
        _mismatch("train-mode output", y, expected, tol, candidates=FORWARD_MISTAKES + ("eps_arg_ignored",),
                  simulate=lambda v: M.train_forward(v, x64, g, b, e), shape_note=f" for input {shape}")
    what = f"eps={eps:g}: " if eps is not None else ""
    return CheckOutcome(ctx.check_id, True, f"{what}train-mode output matches the reference for inputs "
                        f"{', '.join(str(s) for s in shapes)} (float32)")


@check("forward.train.4d")
def forward_train_4d(ctx):
    return _train_forward(ctx, 4)


@check("forward.train.2d")
def forward_train_2d(ctx):
    return _train_forward(ctx, 2)


@check("hyperparams.eps")
def hyperparams_eps(ctx):
    out = _train_forward(ctx, 4, eps=0.1)
    # and in eval mode, where a hard-coded eps hides from the training-mode checks
    gen = ctx.gen("/eval")
    C = I.num_channels(gen)
    bmean, bvar = I.channel_stats(gen, C)
    rmean, rvar = I.make_running(gen, bmean, bvar)
    rv = I.shaped(rvar, 4).float()
    rm = I.shaped(rmean, 4).float()
    handle, g, b = ctx.affine_module(gen, C, 4, eps=0.1)
    ctx.set(handle, moving_mean=rm, moving_var=rv)
    x = I.make_x(gen, (2, C, 3, C + 2), torch.float32, bmean, bvar)
    y = ctx.forward(handle, x, mode="eval", grad=False)["y"]
    x64 = x.double()
    _mismatch("eps=0.1: eval-mode output", y, ref.normalize(x64, rm.double(), rv.double(), g, b, 0.1),
              ctx.tol(torch.float32), candidates=("eps_arg_ignored", "eps_outside_sqrt", "eps_missing",
                                                  "batch_stats_in_eval", "running_updated_in_eval"),
              simulate=lambda v: M.eval_forward(v, x64, g, b, rm.double(), rv.double(), 0.1, 0.9))
    out.message = out.message.replace("train-mode output matches", "train- and eval-mode outputs match")
    return out


# ---------------------------------------------------------------------------- running statistics

def _running(ctx, num_dims, steps, momentum=None):
    gen = ctx.gen(f"/{num_dims}")
    C = I.num_channels(gen)
    kwargs = {} if momentum is None else {"momentum": momentum}
    m = 0.9 if momentum is None else momentum
    handle, _ = ctx.build(C, num_dims, **kwargs)
    shape = (2, C, 3, C + 2) if num_dims == 4 else (4, C)
    xs = []
    mean = torch.zeros(C, dtype=torch.float64)
    var = {"biased": torch.ones(C, dtype=torch.float64), "unbiased": torch.ones(C, dtype=torch.float64)}
    accepted = ["biased", "unbiased"] if ctx.rubric.running_var == "either" else [ctx.rubric.running_var]
    found = None
    tol = ctx.tol(torch.float32)
    for step in range(1, steps + 1):
        x = I.make_x(gen, shape, torch.float32)
        xs.append(x.double())
        s = ctx.forward(handle, x, check_output=False)["structure"]
        got_mean, got_var = _stat(s, "moving_mean", C), _stat(s, "moving_var", C)
        x64 = x.double()
        bmean, bvar = (t.reshape(C) for t in ref.batch_stats(x64))
        mean = ref.decay(mean, bmean, m)
        n = ref.count(x64)
        var = {"biased": ref.decay(var["biased"], bvar, m), "unbiased": ref.decay(var["unbiased"], bvar * n / (n - 1), m)}

        def replay(v, k=step):
            mm, mv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
            for xi in xs[:k]:
                mm, mv = M.running_update(v, mm, mv, xi, m)
            return mm, mv

        def replay_var(v):
            return replay(v)[1]
        where = f"after training step {step} (momentum={m:g}, input {shape})"
        _mismatch(f"moving_mean {where}", got_mean, mean, tol, channel_dim=None,
                  candidates=RUNNING_MISTAKES + ("momentum_ignored",), simulate=lambda v: replay(v)[0])
        matches = [k for k in accepted if close(got_var, var[k], tol.rtol, tol.atol)]
        if not matches:
            cands = RUNNING_MISTAKES + ("momentum_ignored",)
            label = " or ".join(accepted)
            _mismatch(f"moving_var {where} (accepted: {label} batch variance)", got_var, var[accepted[0]], tol,
                      channel_dim=None, candidates=cands, simulate=replay_var)
        found = found or matches[0]
    return found


@check("running_stats")
def running_stats(ctx):
    kinds = {_running(ctx, 4, 3), _running(ctx, 2, 3)}
    kind = " and ".join(sorted(kinds))
    ctx.facts["running_var"] = kind
    src = {"biased": "biased, as in the slides", "unbiased": "unbiased, as torch.nn keeps it"}
    note = "running variance found: " + "; ".join(src[k] for k in sorted(kinds))
    return CheckOutcome(ctx.check_id, True, "moving_mean and moving_var follow moving = m·moving + (1 − m)·batch "
                        "over 3 steps, for 4-D and 2-D inputs", notes=[note])


@check("hyperparams.momentum")
def hyperparams_momentum(ctx):
    _running(ctx, 4, 2, momentum=0.7)
    return CheckOutcome(ctx.check_id, True, "momentum=0.7 is used in the running-statistics update")


# ---------------------------------------------------------------------------- eval mode

@check("eval.forward")
def eval_forward(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    tol = ctx.tol(torch.float32)
    for num_dims, shape in ((4, (2, C, 3, C + 2)), (2, (4, C))):
        gamma, beta = I.make_affine(gen, C)
        bmean, bvar = I.channel_stats(gen, C)
        rmean, rvar = I.make_running(gen, bmean, bvar)
        g, b = I.shaped(gamma, num_dims), I.shaped(beta, num_dims)
        rm, rv = I.shaped(rmean, num_dims), I.shaped(rvar, num_dims)
        handle, _ = ctx.build(C, num_dims)
        ctx.set(handle, gamma=g, beta=b, moving_mean=rm.float(), moving_var=rv.float())
        x = I.make_x(gen, shape, torch.float32, bmean, bvar)
        y = ctx.forward(handle, x, mode="eval", grad=False)["y"]
        x64 = x.double()
        rm32, rv32 = rm.float().double(), rv.float().double()
        expected = ref.normalize(x64, rm32, rv32, g, b, 1e-5)
        _mismatch("eval-mode output (model.eval(), torch.no_grad())", y, expected, tol,
                  candidates=("batch_stats_in_eval", "running_updated_in_eval") + FORWARD_MISTAKES,
                  simulate=lambda v: M.eval_forward(v, x64, g, b, rm32, rv32, 1e-5, 0.9),
                  shape_note=f" for input {shape}")
    return CheckOutcome(ctx.check_id, True, "eval-mode output uses moving_mean and moving_var (4-D and 2-D)")


@check("eval.frozen")
def eval_frozen(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, _ = ctx.build(C, 4)
    shape = (2, C, 3, C + 2)
    before = ctx.forward(handle, I.make_x(gen, shape), check_output=False)["structure"]
    b_mean, b_var = _stat(before, "moving_mean", C), _stat(before, "moving_var", C)
    # under torch.no_grad() as the course evaluates, and with grad enabled: model.eval() alone
    # must stop the updates (a validation pass without no_grad is common)
    for grad, how in ((False, "under torch.no_grad()"), (True, "with grad enabled")):
        after = ctx.forward(handle, I.make_x(gen, shape), mode="eval", grad=grad, check_output=False)["structure"]
        a_mean, a_var = _stat(after, "moving_mean", C), _stat(after, "moving_var", C)
        if not (torch.equal(a_mean, b_mean) and torch.equal(a_var, b_var)):
            raise Failed(f"an eval-mode forward ({how}) changed moving_mean/moving_var",
                         expected=f"{fmt(b_mean)} / {fmt(b_var)}", got=f"{fmt(a_mean)} / {fmt(a_var)}",
                         diagnosis=M.CATALOGUE["running_updated_in_eval"])
    return CheckOutcome(ctx.check_id, True, "eval-mode forwards leave moving_mean and moving_var unchanged, with and "
                        "without torch.no_grad()")


# ---------------------------------------------------------------------------- gradients

def _ref_grads(variant, x, g, b, w, eps):
    x = x.detach().clone().requires_grad_(True)
    g = g.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    y = M.train_forward(variant, x, g, b, eps)
    grads = torch.autograd.grad((y * w).sum(), [x, g, b], allow_unused=True)
    return tuple(torch.zeros_like(t) if gr is None else gr for t, gr in zip((x, g, b), grads))


@check("gradients")
def gradients(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    notes, dtypes = [], set()
    for num_dims, shape in ((4, (2, C, 3, C + 2)), (2, (4, C))):
        gamma, beta = I.make_affine(gen, C)
        g, b = I.shaped(gamma, num_dims), I.shaped(beta, num_dims)
        x64 = I.make_x(gen, shape, torch.float64)
        w = I.make_weights(gen, shape)
        dtype = torch.float64
        try:
            handle, _ = ctx.build(C, num_dims)
            ctx.set(handle, dtype="float64", gamma=g, beta=b)
            resp = ctx.forward(handle, x64, weights=w)
        except (StudentError, Failed) as e:
            # float64 is only for precision: a submission that insists on float32 is graded there
            dtype = torch.float32
            notes.append(f"float64 failed ({e}); gradients checked in float32")
            handle, _ = ctx.build(C, num_dims)
            ctx.set(handle, gamma=g.float(), beta=b.float())
            resp = ctx.forward(handle, x64.float(), weights=w.float())
        dtypes.add(str(dtype).replace("torch.", ""))
        xin = x64.to(dtype).double()
        expected = _ref_grads(M.Variant(), xin, g.to(dtype).double(), b.to(dtype).double(), w.to(dtype).double(), 1e-5)
        def check_all(tol, label):
            for i, (name, key) in enumerate((("input", "dx"), ("gamma", "dgamma"), ("beta", "dbeta"))):
                if resp.get(key) is None:
                    raise Failed(f"{name} received no gradient: is it a parameter, and is it used in forward?",
                                 expected=f"d loss / d {name}", got="None")

                def sim(v, i=i):
                    return _ref_grads(v, xin, g.to(dtype).double(), b.to(dtype).double(), w.to(dtype).double(),
                                      1e-5)[i]
                _mismatch(f"gradient w.r.t. {name} of sum(y·w) ({label}, input {shape})", resp[key], expected[i],
                          tol, channel_dim=1 if name == "input" else None,
                          candidates=("stats_detached",) + FORWARD_MISTAKES, simulate=sim)
        try:
            check_all(ctx.tol(dtype), str(dtype).replace("torch.", ""))
        except Failed:
            if dtype != torch.float64:
                raise
            # float64 in, but computed in float32 inside (X.float(), a float32 constant): judged
            # at float32's tolerance, which a wrong formula still misses by orders of magnitude
            check_all(ctx.tol(torch.float32), "float64 input computed in float32, float32 tolerance")
            notes.append(f"with float64 inputs your layer computes in float32 ({shape}); checked at float32 "
                         "tolerance")
            dtypes.add("float32 inside")
    return CheckOutcome(ctx.check_id, True, f"gradients w.r.t. input, gamma and beta match ({', '.join(sorted(dtypes))}; "
                        "4-D and 2-D)", notes=notes)


# ---------------------------------------------------------------------------- hygiene

@check("hygiene.input_unchanged")
def input_unchanged(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, _ = ctx.build(C, 4)
    for mode in ("train", "eval"):
        x = I.make_x(gen, (2, C, 3, C + 2))
        if ctx.forward(handle, x, mode=mode, check_output=False)["input_modified"]:
            raise Failed(f"forward in {mode} mode changed its input tensor", expected="input unchanged",
                         got="input modified in place", diagnosis=M.CATALOGUE["inplace_input"])
    return CheckOutcome(ctx.check_id, True, "the input tensor is left unchanged in train and eval mode")


@check("hygiene.stats_detached")
def stats_detached(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, _ = ctx.build(C, 4)
    shape = (2, C, 3, C + 2)
    for _ in range(2):
        s = ctx.forward(handle, I.make_x(gen, shape), weights=I.make_weights(gen, shape).float(),
                        check_output=False)["structure"]
    for role in ("moving_mean", "moving_var"):
        r = s["roles"][role]
        if r.get("name") and (r["has_graph"] or r["requires_grad"]):
            raise Failed(f"self.{r['name']} carries an autograd graph after a training step",
                         expected="requires_grad=False, grad_fn=None", got=f"requires_grad={r['requires_grad']}",
                         diagnosis=M.CATALOGUE["stats_with_graph"])
    return CheckOutcome(ctx.check_id, True, "running statistics carry no autograd graph after training steps")


# ---------------------------------------------------------------------------- inside LeNet-5

INTEGRATION_STEPS = 3
INTEGRATION_LR = 0.5  # large, so a parameter the optimiser misses is visibly left behind
INTEGRATION_TOL = (1e-4, 1e-5)  # rtol, atol: float32 through a whole network and three updates


def _reference_steps(init, xs, ys, x_eval, activation, unbiased):
    model = lenet.LeNet5(norm=lambda c, d: ref.BatchNorm2d(c, d, unbiased_running_var=unbiased), activation=activation)
    model.load_weight_state(init)
    losses = lenet.plain_sgd_steps(model, xs, ys, INTEGRATION_LR)
    model.eval()
    with torch.no_grad():
        logits = model(x_eval)
    return torch.tensor(losses, dtype=torch.float64), model.weight_state(), logits


@check("integration.lenet")
def integration_lenet(ctx):
    gen = ctx.gen()
    with torch.random.fork_rng():
        torch.manual_seed(ctx.rubric.seed_for(ctx.check_id))
        init = lenet.LeNet5().weight_state()
    xs = [torch.randn((8, 3, 32, 32), generator=gen) for _ in range(INTEGRATION_STEPS)]
    ys = [torch.randint(0, 10, (8,), generator=gen) for _ in range(INTEGRATION_STEPS)]
    x_eval = torch.randn((8, 3, 32, 32), generator=gen)
    activation = ctx.rubric.training.activation
    resp = ctx.call({"op": "lenet_steps", "init": init, "xs": xs, "ys": ys, "x_eval": x_eval, "lr": INTEGRATION_LR,
                     "activation": activation}, f"{INTEGRATION_STEPS} SGD steps of LeNet-5 with your BatchNorm2d")
    rtol, atol = INTEGRATION_TOL
    accepted = {"either": (False, True), "biased": (False,), "unbiased": (True,)}[ctx.rubric.running_var]
    refs = [_reference_steps(init, xs, ys, x_eval, activation, u) for u in accepted]
    losses, weights, logits = refs[0]
    got = resp["losses"]
    if not close(got[:1], losses[:1], rtol, atol):
        raise Failed("inside LeNet-5 the first training step's loss already differs from the reference: see the "
                     "forward checks", expected=fmt(losses), got=fmt(got))
    if not close(got, losses, rtol, atol):
        step = int(((got - losses).abs() > atol + rtol * losses.abs()).nonzero()[0]) + 1
        if not all(resp["registered"]):
            raise Failed(f"inside LeNet-5 the loss drifts from the reference at SGD step {step} of "
                         f"{INTEGRATION_STEPS}: model.parameters() does not hold gamma and beta, so the optimiser "
                         "never updates them", expected=fmt(losses), got=fmt(got),
                         diagnosis=M.CATALOGUE["params_not_parameters"])
        raise Failed(f"inside LeNet-5 the loss drifts from the reference at SGD step {step} of {INTEGRATION_STEPS}: "
                     "the gradients or updates differ (see the layer's own checks)", expected=fmt(losses),
                     got=fmt(got))
    for name, w in weights.items():
        _mismatch(f"LeNet-5 {name} after {INTEGRATION_STEPS} SGD steps", resp["weights"][name], w,
                  Tolerance(rtol, atol), channel_dim=None)
    if not any(close(resp["eval_logits"], r[2], rtol, atol) for r in refs):
        ok, m = compare(resp["eval_logits"], logits, rtol, atol, channel_dim=None)
        raise Failed(f"inside LeNet-5, model.eval() outputs differ from the reference after training (max abs error "
                     f"{m.max_abs:.3g}): the running statistics or the eval switch inside a network", metrics=m,
                     expected=fmt(logits), got=fmt(resp["eval_logits"]))
    return CheckOutcome(ctx.check_id, True, f"LeNet-5 with your BatchNorm2d follows the reference for "
                        f"{INTEGRATION_STEPS} SGD steps (losses, weights) and in eval mode")


# ---------------------------------------------------------------------------- device

def not_applicable(check_id, cuda: bool) -> str:
    """Why a check cannot run on this machine ('' when it can): it then counts nowhere."""
    if check_id == "device.cuda" and not cuda:
        return "no CUDA device here: the GPU forward check was not run"
    return ""


@check("device.cuda")
def device_cuda(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, g, b = ctx.affine_module(gen, C, 4, device="cuda")
    tol = ctx.tol(torch.float32)
    shape = (2, C, 3, C + 2)
    try:
        x = I.make_x(gen, shape)
        resp = ctx.forward(handle, x, device="cuda")
        x64 = x.double()
        _mismatch("train-mode output on CUDA", resp["y"], ref.normalize(x64, *ref.batch_stats(x64), g, b, 1e-5), tol)
        s = ctx.forward(handle, x, mode="eval", grad=False, device="cuda")
        if s["y_device"].split(":")[0] != "cuda":
            raise Failed("the output is not on the input's device", expected="cuda", got=s["y_device"],
                         diagnosis=M.CATALOGUE["stats_wrong_device"])
    except StudentError as e:
        if "device" in str(e).lower():
            raise Failed(f"on CUDA: {e}", diagnosis=M.CATALOGUE["stats_wrong_device"]) from None
        raise
    return CheckOutcome(ctx.check_id, True, "train and eval forward work on CUDA after model.to('cuda')")


# ---------------------------------------------------------------------------- advisory notes

@check("advice.stable_variance")
def stable_variance(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, g, b = ctx.affine_module(gen, C, 4)
    shape = (4, C, 4, C + 2)
    mean = I.signs(gen, C) * 0.5
    var = torch.full((C,), 1.0, dtype=torch.float64)
    tol = ctx.tol(torch.float32)
    base = I.make_x(gen, shape, torch.float64, mean, var)
    # the same spread, far from zero: E[x²] − E[x]² then subtracts two numbers near 1e6
    results = []
    for offset in (0.0, 1000.0):
        x = (base + offset).float()
        y = ctx.forward(handle, x)["y"]
        x64 = x.double()
        results.append(compare(y, ref.normalize(x64, *ref.batch_stats(x64), g, b, 1e-5), tol.rtol, tol.atol)[1])
    near, far = results
    # x itself is quantised to ~6e-5 at 1000 in float32, so even a two-pass variance is off by
    # ~1e-4 there; E[x²] − E[x]² loses the variance entirely (errors of 1e-2 and far more)
    fragile = far.max_abs > 1e-2
    if near.mismatched:
        return CheckOutcome(ctx.check_id, True, "not assessed: the output is off even for inputs near zero "
                            "(see the forward checks)")
    if fragile:
        return CheckOutcome(ctx.check_id, False, f"with channel means near 1000 (float32) the output is off by up to "
                            f"{far.max_abs:.3g}; near zero it is exact", metrics=far,
                            diagnosis=M.CATALOGUE["fragile_variance"])
    return CheckOutcome(ctx.check_id, True, "the variance stays accurate for channel means near 1000 (float32)")


@check("advice.buffers")
def buffers(ctx):
    _, s = ctx.build(3, 4)
    plain = [s["roles"][r]["name"] for r in ("moving_mean", "moving_var")
             if s["roles"][r].get("name") and not s["roles"][r]["is_buffer"]]
    if plain:
        return CheckOutcome(ctx.check_id, False, f"{', '.join('self.' + p for p in plain)} are plain tensors, not "
                            "buffers", diagnosis=M.CATALOGUE["not_buffers"])
    return CheckOutcome(ctx.check_id, True, "moving statistics are registered buffers")


@check("advice.grad_mode")
def grad_mode(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    gamma, beta = I.make_affine(gen, C)
    bmean, bvar = I.channel_stats(gen, C)
    rmean, rvar = I.make_running(gen, bmean, bvar)
    g, b, rm, rv = (I.shaped(t, 4) for t in (gamma, beta, rmean, rvar))
    tol = ctx.tol(torch.float32)
    x = I.make_x(gen, (2, C, 3, C + 2), torch.float32, bmean, bvar)
    x64 = x.double()
    with_running = ref.normalize(x64, rm.float().double(), rv.float().double(), g, b, 1e-5)
    with_batch = ref.normalize(x64, *ref.batch_stats(x64), g, b, 1e-5)
    findings, notes = [], []
    handle, _ = ctx.build(C, 4)
    ctx.set(handle, gamma=g, beta=b, moving_mean=rm.float(), moving_var=rv.float())
    if not close(ctx.forward(handle, x, mode="eval", grad=False)["y"], with_running, tol.rtol, tol.atol):
        return CheckOutcome(ctx.check_id, True, "not assessed: model.eval() under torch.no_grad() does not use the "
                            "running statistics (see eval.forward)")
    y = ctx.forward(handle, x, mode="eval", grad=True)["y"]
    if close(y, with_batch, tol.rtol, tol.atol):
        findings.append(M.CATALOGUE["ignores_training_flag"])
    handle, _ = ctx.build(C, 4)
    ctx.set(handle, gamma=g, beta=b, moving_mean=rm.float(), moving_var=rv.float())
    y = ctx.forward(handle, x, mode="train", grad=False)["y"]
    if close(y, with_running, tol.rtol, tol.atol):
        notes.append(M.CATALOGUE["grad_mode_switching"].hint["en"])
    if findings:
        return CheckOutcome(ctx.check_id, False, "under model.eval() with grad enabled the layer used batch statistics",
                            diagnosis=findings[0], notes=notes)
    return CheckOutcome(ctx.check_id, True, "model.eval() switches to the running statistics with or without no_grad",
                        notes=notes)


# ---------------------------------------------------------------------------- built-in normalisation

@check("originality.no_builtin_norm")
def no_builtin_norm(ctx):
    # evaluated last, from what every other check recorded: see run()
    raise AssertionError("run() evaluates this check itself")


def _builtin_outcome(ctx, runtime_ops):
    violations = [f for f in ctx.static if f.in_class]
    notes = [f"line {f.line}: {f.text} is used outside BatchNorm2d (fine for testing)" for f in ctx.static if not f.in_class]
    if not violations and not runtime_ops:
        return CheckOutcome("originality.no_builtin_norm", True, "no built-in normalisation used", notes=notes)
    parts = []
    if violations:
        parts.append("in the source: " + "; ".join(f"line {f.line}: {f.text}" for f in violations))
    if runtime_ops:
        parts.append("at run time: " + ", ".join(sorted(runtime_ops)))
    return CheckOutcome("originality.no_builtin_norm", False, "torch's built-in normalisation is used — "
                        + "; ".join(parts), diagnosis=M.CATALOGUE["builtin_norm"], notes=notes)


# ---------------------------------------------------------------------------- running the battery

def _exception_diagnosis(e: StudentError):
    text = f"{e} {e.tb}"
    if "in-place operation" in text or "inplace" in text.lower():
        return M.CATALOGUE["inplace_input"]
    if "must match the size of tensor" in text or "expanded size" in text:
        return M.CATALOGUE["no_keepdim"]
    if "same device" in text or "device" in str(e).lower() and "cuda" in text:
        return M.CATALOGUE["stats_wrong_device"]
    if "backward through the graph a second time" in text:
        return M.CATALOGUE["stats_with_graph"]
    return None


def run(ctx: Context, check_ids, deadline: float):
    """Outcomes in check_ids order. A crash or timeout fails that check only: the next check
    gets a fresh worker, until the submission's total time is spent."""
    outcomes = {}
    runtime_ops = set()
    lost = []  # sandbox failures in a row: a worker that hangs everywhere is not retried forever
    for cid in check_ids:
        if cid == "originality.no_builtin_norm":
            continue
        ctx.check_id, ctx.ops_this_check = cid, set()
        why = not_applicable(cid, ctx.cuda)
        if why:
            outcomes[cid] = CheckOutcome(cid, None, skipped=why)
            continue
        if time.monotonic() > deadline:
            outcomes[cid] = CheckOutcome(cid, False, "not run: the submission's total time was used up")
            continue
        if len(lost) >= 3:
            # a worker that hangs in every check is not retried for each of them
            outcomes[cid] = CheckOutcome(cid, False, f"not run: the submission's process failed in three checks in "
                                         f"a row ({lost[-1]})")
            continue
        try:
            if ctx.session is None or ctx.session.exit is not None:
                ctx.start()
            out = CHECKS[cid](ctx)
        except Failed as f:
            out = CheckOutcome(cid, False, str(f), expected=f.expected, got=f.got, metrics=f.metrics, diagnosis=f.diagnosis)
        except StudentError as e:
            msg = f"your code raised {e}" if e.exception else str(e)
            out = CheckOutcome(cid, False, msg, got=e.tb.strip(), diagnosis=_exception_diagnosis(e))
        except SandboxError as e:
            out = CheckOutcome(cid, False, str(e))
            lost.append(str(e))
        except Exception:
            # a grader bug must not cost the student: say so plainly
            out = CheckOutcome(cid, False, "internal grader error in this check:\n" + traceback.format_exc(limit=3))
        if ctx.session is not None and ctx.session.exit is None:
            lost = []
        out.builtin_ops = sorted(ctx.ops_this_check)
        runtime_ops |= ctx.ops_this_check
        outcomes[cid] = out
    if "originality.no_builtin_norm" in check_ids:
        outcomes["originality.no_builtin_norm"] = _builtin_outcome(ctx, runtime_ops)
    for cid, out in outcomes.items():
        spec = ctx.rubric.spec(cid)
        if spec is not None and spec.advisory and out.passed is False and \
                (out.diagnosis is None or out.diagnosis.code not in ADVISORY_FINDINGS):
            # a note is a finding about working code; code that crashed, hung or failed a graded
            # property here (a dtype, a shape) has none: the graded checks say so
            outcomes[cid] = CheckOutcome(cid, True, "not assessed: " + (out.message.splitlines() or ["error"])[0])
    return [outcomes[c] for c in check_ids]
