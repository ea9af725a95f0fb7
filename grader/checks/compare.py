"""Elementwise comparison with tolerances and error metrics (parent process)."""
import torch

from grader.results import Metrics


def compare(got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, channel_dim: int | None = 1):
    """(passed, Metrics). Same rule as torch.testing: |got - expected| <= atol + rtol * |expected|."""
    g = got.detach().to(torch.float64).reshape(expected.shape)
    e = expected.detach().to(torch.float64)
    diff = (g - e).abs()
    diff = torch.where(torch.isnan(diff) | torch.isinf(diff), torch.full_like(diff, float("inf")), diff)
    allowed = atol + rtol * e.abs()
    bad = diff > allowed
    rel = diff / e.abs().clamp_min(1e-12)
    worst = None
    if channel_dim is not None and g.dim() > channel_dim and bool(bad.any()):
        excess = (diff - allowed).movedim(channel_dim, 0).reshape(g.shape[channel_dim], -1).amax(dim=1)
        worst = int(excess.argmax())
    m = Metrics(max_abs=float(diff.max()) if diff.numel() else 0.0, max_rel=float(rel.max()) if rel.numel() else 0.0,
                worst_channel=worst, atol=atol, rtol=rtol, mismatched=int(bad.sum()), total=diff.numel())
    return not bool(bad.any()), m


def close(got, expected, rtol, atol) -> bool:
    if got is None or expected is None or got.numel() != expected.numel():
        return False
    return compare(got, expected, rtol, atol, channel_dim=None)[0]


def fmt(t: torch.Tensor, n: int = 6, digits: int = 5) -> str:
    flat = t.detach().reshape(-1).to(torch.float64)
    vals = ", ".join(f"{v:.{digits}g}" for v in flat[:n].tolist())
    more = ", ..." if flat.numel() > n else ""
    return f"[{vals}{more}]"
