"""The mistake search (parent process).

When a check's numbers differ from the reference, its inputs are replayed through a space of
formula variants (checks/mistakes.py describes them; the oracle, checks/oracle.py, gives their outputs):
every single mistake that could act on what the check
measured, then every pair of mistakes in different parts of the formula. A variant that
reproduces the submission's numbers within tolerance names the mistakes, most costly first;
when none does, the pattern is reported as not recognised with where the numbers differ.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import torch

from grader.checks import mistakes as M
from grader.checks.compare import close, compare, fmt
from grader.checks.worker import Failed
from grader.results import Diagnosis

MATCH_FACTOR = 10.0  # a variant matches within this multiple of the check's tolerance

AXES_CODES = {"sample": "wrong_axes", "instance": "wrong_axes_instance", "batch": "wrong_axes_batch",
              "global": "wrong_axes_global", "channels_last": "wrong_axes_channels_last"}

_EPS = [("eps_outside_sqrt", {"eps_mode": "outside"}), ("eps_missing", {"eps_mode": "none"}),
        ("eps_arg_ignored", {"eps_mode": "fixed"})]
_AFFINE = [("gamma_beta_ignored", {"affine": "ignored"}), ("gamma_beta_swapped", {"affine": "swapped"}),
           ("beta_multiplied", {"affine": "beta_times"}), ("affine_last_axis", {"affine": "last_axis"})]
_UPDATE = [("reversed_momentum", {"update": "reversed"}), ("momentum_ignored", {"update": "fixed"}),
           ("momentum_ignored_reversed", {"update": "fixed_reversed"}), ("running_overwritten", {"update": "overwrite"}),
           ("running_not_updated", {"update": "none"}), ("running_init_first_batch", {"running_init": "first_batch"})]


def axes_options(rank):
    # every subset of the input's dims, with and without keepdim (a statistic without keepdim
    # broadcasts from the right: channels-last code and the (C,)-along-W mistake are here)
    correct = (0,) if rank == 2 else (0, 2, 3)
    out = []
    for k in range(1, rank + 1):
        for dims in itertools.combinations(range(rank), k):
            prefix = dims == tuple(range(k))  # without keepdim these broadcast the same
            for keep in ((True,) if prefix else (True, False)):
                if dims == correct and keep:
                    continue
                out.append((_axes_code(dims, keep, rank), {"axes": dims, "keepdim": keep}))
                if not keep:  # x.var(dims) is right per value even where mean((x − μ)²) is not
                    out.append((_axes_code(dims, keep, rank), {"axes": dims, "keepdim": keep, "var_direct": True}))
    return out


def _axes_code(dims, keep, rank):
    if dims == ((0,) if rank == 2 else (0, 2, 3)) and not keep:
        return "no_keepdim"
    for name, per_rank in M.NAMED_AXES.items():
        if per_rank.get(rank) == dims:
            return AXES_CODES[name]
    return "wrong_axes_dims"


def options(kind, rank, accepted_var=("biased",)):
    """(code, fields) of the single mistakes that can act on what a check of this kind measures."""
    if kind in ("train", "grad"):
        opts = axes_options(rank) + [("unbiased_var_in_norm", {"unbiased_norm": True})] + _EPS + _AFFINE + [
            ("running_in_train_norm", {"train_stats": "updated_running"})]
        if kind == "grad":
            opts += [("stats_detached", {"detach_stats": True}), ("grad_missing_mean_term", {"detach_stats": "mean"}),
                     ("grad_missing_var_term", {"detach_stats": "var"})]
        return opts
    if kind == "eval":
        return [("batch_stats_in_eval", {"eval_stats": "batch"}), ("running_updated_in_eval", {"update_in_eval": True}),
                ("eval_var_as_std", {"eval_var_as_std": True})] + \
            _EPS + _AFFINE
    if kind == "running_mean":
        return list(_UPDATE) + [("wrong_axes_global", {"axes": "global"})]
    if kind == "running_var":
        extra = [("std_in_running_var", {"running_var": "std"}), ("running_var_starts_at_zero", {"running_init": "var_zero"})]
        if "unbiased" not in accepted_var:
            extra.append(("unbiased_running_var", {"running_var": "unbiased"}))
        return list(_UPDATE) + extra + [("wrong_axes_global", {"axes": "global"})]
    raise ValueError(kind)


def _pairable(code, fields):
    # pairs only among the named mistakes: a pair with an arbitrary set of axes explains too much
    # to be believed, and costs most of the search's time
    return code != "wrong_axes_dims" and not fields.get("var_direct")


def candidates(kind, rank, bases=None, accepted_var=("biased",)):
    """Every variant search() may try for a check of this kind, whatever the submission returned:
    what a check pack must hold for the search to run on it (computed.py)."""
    opts = options(kind, rank, accepted_var)
    out = []
    for base in bases or [M.Variant()]:
        out += [replace(base, **fields) for _, fields in opts]
        named = [(c, f) for c, f in opts if _pairable(c, f)]
        out += [replace(base, **f1, **f2) for (_, f1), (_, f2) in itertools.combinations(named, 2) if not set(f1) & set(f2)]
    return list(dict.fromkeys(out))


def diagnosis_for(code, fields, rank):
    if code != "wrong_axes_dims":
        return M.CATALOGUE[code]
    m = M.CATALOGUE[code]
    want = "dim=0" if rank == 2 else "dim=(0, 2, 3)"
    dims = str(tuple(fields["axes"])) + ("" if fields.get("keepdim", True) else " without keepdim")
    sub = {"dims": dims, "want": want, "spatial": "" if rank == 2 else " and spatial axes",
           "spatial_zh": "" if rank == 2 else " 和空间维"}
    return Diagnosis(code, {k: v.format(**sub) for k, v in m.title.items()},
                     {k: v.format(**sub) for k, v in m.hint.items()})


def _matches(got, out, tol):
    rtol, atol = tol.rtol * MATCH_FACTOR, tol.atol * MATCH_FACTOR
    if isinstance(out, tuple):
        return all(close(g, o, rtol, atol) for g, o in zip(got, out))
    return close(got, out, rtol, atol)


def search(kind, simulate, got, expected, tol, rank, bases=None, cache=None, accepted_var=("biased",)):
    """The diagnoses of the variant (one mistake, else two) that reproduces got; [] when none does.
    simulate(variant) -> what the check measured; cache: variant -> output, shared by the
    searches of one check input (a gradient check searches dx, dgamma and dbeta)."""
    cache = {} if cache is None else cache
    for base in bases or [M.Variant()]:
        found = _search_from(base, kind, simulate, got, expected, tol, rank, cache, accepted_var)
        if found:
            return found
    return []


def _search_from(base, kind, simulate, got, expected, tol, rank, cache, accepted_var):

    def run(v):
        if v not in cache:
            try:
                cache[v] = simulate(v)
            except (ValueError, RuntimeError, IndexError):
                cache[v] = None  # this variant cannot even produce an output for this input
            # (a check pack without this variant answers None: the search goes on without it)
        return cache[v]

    opts = options(kind, rank, accepted_var)
    singles = []
    for code, fields in opts:
        v = replace(base, **fields)
        out = run(v)
        if out is None:
            continue
        if _matches(got, out, tol):
            return [diagnosis_for(code, fields, rank)]
        if _pairable(code, fields):
            singles.append((code, fields, _cost(out, expected, tol)))
    for (c1, f1, d1), (c2, f2, d2) in itertools.combinations(singles, 2):
        if set(f1) & set(f2):
            continue  # two values of one field are not two mistakes
        out = run(replace(base, **f1, **f2))
        if out is not None and _matches(got, out, tol):
            # most costly first: the mistake that alone puts more values out of tolerance
            pair = sorted([(d1, c1, f1), (d2, c2, f2)], key=lambda t: t[0], reverse=True)
            return [diagnosis_for(c, f, rank) for _, c, f in pair]
    return []


def _cost(out, expected, tol):
    # (values out of tolerance, largest error): what this mistake alone costs the output
    if isinstance(out, tuple):
        return max(_cost(o, e, tol) for o, e in zip(out, expected))
    if out.numel() != expected.numel():
        return (float("inf"), float("inf"))
    d = (out.reshape(-1).double() - expected.reshape(-1).double()).abs()
    return (int((d > tol.atol + tol.rtol * expected.reshape(-1).double().abs()).sum()), float(d.max()))


def axes_from_state(value, rank, simulate, tol):
    """The reduction dims whose statistic, averaged into a fresh (1, C, ...) moving_mean for one
    step, gives this wrongly shaped state; None if none does. (The state's shape alone mixes the
    statistic's shape with the template's.) simulate(fields) -> that moving_mean, from the oracle's
    "state_mean" op on the step's input."""
    for code, fields in axes_options(rank):
        if not fields["keepdim"]:
            continue
        want = simulate(fields)
        if want is not None and tuple(want.shape) == tuple(value.shape) and _matches(value.double(), want, tol):
            return code, fields
    return None


def where_differs(got, expected, tol, channel_dim=1):
    """Plain words on where the numbers differ: channels, positions, one example."""
    g = got.detach().double().reshape(expected.shape)
    e = expected.detach().double()
    bad = (g - e).abs() > tol.atol + tol.rtol * e.abs()
    bad = bad | torch.isnan(g)
    parts = []
    if channel_dim is not None and e.dim() > channel_dim:
        per = bad.movedim(channel_dim, 0).reshape(e.shape[channel_dim], -1)
        off = [int(c) for c in per.any(dim=1).nonzero().flatten()]
        ok = [c for c in range(e.shape[channel_dim]) if c not in off]
        parts.append(f"channels {off} of {e.shape[channel_dim]} differ" + (f", channels {ok} match" if ok else ""))
        if e.dim() == 4 and off:
            cols = [int(w) for w in bad.any(dim=(0, 1, 2)).nonzero().flatten()]
            if len(cols) < e.shape[3]:
                parts.append(f"only at W positions {cols}")
    first = bad.nonzero()
    if len(first):
        idx = tuple(int(i) for i in first[0])
        parts.append(f"first at index {idx}: expected {float(e[idx]):.6g}, got {float(g[idx]):.6g}")
    return "; ".join(parts)


def mismatch(what, got, expected, tol, channel_dim=1, kind=None, simulate=None, rank=None, shape_note="",
             cache=None, accepted_var=("biased",), bases=None):
    """Compare; on failure raise Failed with metrics and the mistakes the search names."""
    ok, m = compare(got, expected, tol.rtol, tol.atol, channel_dim)
    if ok:
        return m
    diags = []
    if simulate is not None and got.numel() == expected.numel():
        diags = search(kind, simulate, got.reshape(expected.shape) if isinstance(got, torch.Tensor) else got,
                       expected, tol, rank or expected.dim(), bases=bases, cache=cache, accepted_var=accepted_var)
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
    if simulate is not None and not diags:
        msg += "\npattern not recognised (no known mistake or pair of mistakes reproduces these numbers): " + \
            where_differs(got, expected, tol, channel_dim)
    raise Failed(msg, expected=exp_s, got=got_s, metrics=m, diagnoses=diags)
