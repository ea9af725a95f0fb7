"""The CUDA check: the layer after model.to('cuda') (parent process; runs only where there is a GPU)."""
from __future__ import annotations

import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks.registry import check
from grader.checks.search import mismatch
from grader.checks.worker import Failed, StudentError
from grader.results import CheckOutcome


@check("device.cuda", numeric=True, needs=(lambda cuda: not cuda, "no_cuda"))
def device_cuda(ctx):
    gen = ctx.gen()
    C = I.num_channels(gen)
    handle, g, b = ctx.affine_module(gen, C, 4, device="cuda")
    tol = ctx.tol(torch.float32)
    shape = (2, C, 3, C + 2)
    try:
        x = I.make_x(gen, shape)
        resp = ctx.forward(handle, x, device="cuda")
        inputs = dict(x=x.double(), gamma=g, beta=b, eps=1e-5)
        mismatch("train-mode output on CUDA", resp["y"], ctx.expect("expected.train", f"train/{shape}", **inputs), tol,
                 kind="train", rank=4, simulate=ctx.simulator("train", f"train/{shape}", **inputs))
        s = ctx.forward(handle, x, mode="eval", grad=False, device="cuda")
        if s["y_device"].split(":")[0] != "cuda":
            raise Failed("the output is not on the input's device", expected="cuda", got=s["y_device"],
                         diagnosis=M.CATALOGUE["stats_wrong_device"])
    except StudentError as e:
        if "device" in str(e).lower():
            raise Failed(f"on CUDA: {e}", diagnosis=M.CATALOGUE["stats_wrong_device"]) from None
        raise
    return CheckOutcome(ctx.check_id, True, "train and eval forward work on CUDA after model.to('cuda')")
