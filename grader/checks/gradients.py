"""The gradient check: d(sum(y·w)) w.r.t. input, gamma and beta in float64 (parent process)."""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.registry import check
from grader.checks.search import mismatch
from grader.checks.worker import Failed, StudentError
from grader.results import CheckOutcome


def ref_grads(variant, x, g, b, w, eps):
    """(dx, dgamma, dbeta) of a variant, computed (full edition only: the checks ask the oracle)."""
    from grader.checks.computed import compute
    return compute("grads", variant, dict(x=x, gamma=g, beta=b, w=w, eps=eps))


@check("gradients", numeric=True)
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
            notes.append(f"float64 failed ({str(e).splitlines()[0]}); gradients checked in float32")
            handle, _ = ctx.build(C, num_dims)
            ctx.set(handle, gamma=g.float(), beta=b.float())
            resp = ctx.forward(handle, x64.float(), weights=w.float())
        dtypes.add(str(dtype).replace("torch.", ""))
        xin, gin, bin_, win = (t.to(dtype).double() for t in (x64, g, b, w))
        # float32 inputs differ from float64 ones: each path has its own answers
        label = f"{str(dtype).replace('torch.', '')}/{shape}"
        inputs = dict(x=xin, gamma=gin, beta=bin_, w=win, eps=1e-5)
        replay = ctx.simulator("grads", label, **inputs)
        memo = {}  # variant -> (dx, dgamma, dbeta): the three searches share one replay per variant

        def full(v):
            if v not in memo:
                memo[v] = replay(v)
            return memo[v]
        expected = ctx.expect("grads", label, M.Variant(), **inputs)

        def check_all(tol, label):
            for i, (name, key) in enumerate((("input", "dx"), ("gamma", "dgamma"), ("beta", "dbeta"))):
                if resp.get(key) is None:
                    raise Failed(f"{name} received no gradient: is it a parameter, and is it used in forward?",
                                 expected=f"d loss / d {name}", got="None")
                mismatch(f"gradient w.r.t. {name} of sum(y·w) ({label}, input {shape})", resp[key], expected[i],
                         tol, channel_dim=1 if name == "input" else None, kind="grad", rank=num_dims,
                         simulate=lambda v, i=i: None if full(v) is None else full(v)[i])
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
