"""The mistake search on synthetic submissions: each catalogued mistake, alone or with another,
replayed on the checks' inputs for several seeds, is named (and only it); numbers no variant
explains are reported as not recognised, with where they differ; the search stays fast."""
import time
from dataclasses import replace

import pytest
import torch

from grader.checks import inputs as I
from grader.checks import mistakes as M
from grader.checks import search as S
from grader.checks.worker import Failed
from grader.rubric import Tolerance
from reference import batchnorm as ref

TOL = Tolerance(rtol=1.3e-6, atol=1e-5)
# replayable mistakes that no corpus file shows (tests/test_corpus.py asks for the rest there)
SEARCH_ONLY = {"eps_missing", "affine_train_only", "eval_blended", "momentum_ignored_reversed",
               "unbiased_running_var", "grad_missing_mean_term"}


def _train_case(seed, shape):
    gen = I.generator(seed)
    C = shape[1]
    g, b = (I.shaped(t, len(shape)) for t in I.make_affine(gen, C))
    x = I.make_x(gen, shape, torch.float32).double()
    return x, g, b


def _shapes(seed):
    C = I.num_channels(I.generator(seed))
    return [(2, C, 3, C + 2), (3, C, 2, C), (2, C), (5, C)]


NAMED_TRAIN = ["wrong_axes", "wrong_axes_instance", "wrong_axes_batch", "wrong_axes_global", "wrong_axes_channels_last",
               "no_keepdim", "unbiased_var_in_norm", "eps_outside_sqrt", "eps_missing", "gamma_beta_ignored",
               "gamma_beta_swapped", "beta_multiplied", "affine_last_axis", "running_in_train_norm"]


@pytest.mark.parametrize("seed", range(6))
def test_each_train_mistake_is_named_alone(seed):
    for shape in _shapes(seed):
        x, g, b = _train_case(seed, shape)
        expected = ref.normalize(x, *ref.batch_stats(x), g, b, 1e-5)
        for code in NAMED_TRAIN:
            try:
                got = M.train_forward(M.CATALOGUE[code].variant, x, g, b, 1e-5)
            except (ValueError, RuntimeError):
                continue  # cannot run on this shape: the submission crashes instead (tests/test_corpus.py)
            if S._matches(got, expected, TOL):
                continue  # the mistake does not act on this rank (axes of the 4-D branch on 2-D input)
            found = [d.code for d in S.search("train", lambda v: M.train_forward(v, x, g, b, 1e-5), got, expected,
                                              TOL, len(shape))]
            assert found == [code], (shape, code, found)


PAIRS = [("unbiased_var_in_norm", "eps_outside_sqrt"), ("wrong_axes_batch", "eps_missing"),
         ("gamma_beta_swapped", "unbiased_var_in_norm"), ("wrong_axes", "beta_multiplied"),
         ("wrong_axes_channels_last", "gamma_beta_ignored")]


@pytest.mark.parametrize("seed", range(6))
def test_two_mistakes_are_both_named_most_costly_first(seed):
    x, g, b = _train_case(seed, _shapes(seed)[0])
    expected = ref.normalize(x, *ref.batch_stats(x), g, b, 1e-5)
    for a, c in PAIRS:
        v = replace(M.CATALOGUE[a].variant, **M.delta(M.CATALOGUE[c].variant))
        got = M.train_forward(v, x, g, b, 1e-5)
        found = [d.code for d in S.search("train", lambda v: M.train_forward(v, x, g, b, 1e-5), got, expected, TOL, 4)]
        assert sorted(found) == sorted([a, c]), (a, c, found)
        # the first one named alone is further from the reference than the second alone
        costs = [S._cost(M.train_forward(M.CATALOGUE[k].variant, x, g, b, 1e-5), expected, TOL) for k in found]
        assert costs[0] >= costs[1]


@pytest.mark.parametrize("seed", range(4))
def test_eval_and_running_mistakes_are_named(seed):
    gen = I.generator(seed)
    C = I.num_channels(gen)
    bmean, bvar = I.channel_stats(gen, C)
    rmean, rvar = I.make_running(gen, bmean, bvar)
    g, b, rm, rv = (I.shaped(t, 4) for t in (*I.make_affine(gen, C), rmean, rvar))
    x = I.make_x(gen, (2, C, 3, C + 2), torch.float64, bmean, bvar)
    expected = ref.normalize(x, rm, rv, g, b, 1e-5)
    for code in ("batch_stats_in_eval", "running_updated_in_eval", "eval_blended", "eval_var_as_std",
                 "affine_train_only", "eps_outside_sqrt"):
        got = M.eval_forward(M.CATALOGUE[code].variant, x, g, b, rm, rv, 1e-5, 0.9)
        found = [d.code for d in S.search("eval", lambda v: M.eval_forward(v, x, g, b, rm, rv, 1e-5, 0.9), got,
                                          expected, TOL, 4)]
        # the eval output alone cannot tell these from their look-alikes: the runner tells them apart
        # with the other checks' verdicts (gamma/beta right in training; statistics left unchanged)
        alike = {"affine_train_only": "gamma_beta_ignored", "eval_blended": "running_updated_in_eval"}
        assert found == [alike.get(code, code)], (code, found)
    xs = [I.make_x(gen, (2, C, 3, C + 2), torch.float32).double() for _ in range(3)]

    def replay(v, m=0.7):
        mm, mv = M.running_start(v, C)
        out = []
        for i, xi in enumerate(xs, start=1):
            mm, mv = M.running_update(v, mm, mv, xi, m, step=i)
            out.append(torch.cat([mm, mv]))
        return torch.stack(out)
    expected = replay(M.Variant())
    for code in ("reversed_momentum", "momentum_ignored", "momentum_ignored_reversed", "running_overwritten",
                 "running_not_updated", "running_init_first_batch", "std_in_running_var", "running_var_starts_at_zero",
                 "unbiased_running_var"):
        got = replay(M.CATALOGUE[code].variant)
        found = [d.code for d in S.search("running_var", replay, got, expected, TOL, 4)]
        assert found == [code], (code, found)


def test_unrecognised_numbers_are_said_plainly_with_where_they_differ():
    x, g, b = _train_case(3, _shapes(3)[0])
    expected = ref.normalize(x, *ref.batch_stats(x), g, b, 1e-5)
    got = expected.clone()
    got[1, 2, 0, 3] += 0.5  # one value off: no formula variant does that
    with pytest.raises(Failed) as e:
        S.mismatch("train-mode output", got, expected, TOL, kind="train", rank=4,
                   simulate=lambda v: M.train_forward(v, x, g, b, 1e-5))
    assert e.value.diagnoses == []
    msg = str(e.value)
    assert "pattern not recognised" in msg and "channels [2]" in msg and "(1, 2, 0, 3)" in msg


def test_grad_mistakes_and_speed():
    x, g, b = _train_case(5, _shapes(5)[0])
    w = I.make_weights(I.generator(9), x.shape)
    from grader.checks.gradients import ref_grads
    expected = ref_grads(M.Variant(), x, g, b, w, 1e-5)
    for code in ("stats_detached", "grad_missing_mean_term", "grad_missing_var_term"):
        got = ref_grads(M.CATALOGUE[code].variant, x, g, b, w, 1e-5)
        memo = {}
        t0 = time.perf_counter()
        found = S.search("grad", lambda v: memo.setdefault(v, ref_grads(v, x, g, b, w, 1e-5))[0], got[0],
                         expected[0], TOL, 4)
        assert [d.code for d in found] == [code]
        assert time.perf_counter() - t0 < 1.0
    # a pair the search must go through every pair to find (the slowest case) stays well under a second
    v = replace(M.CATALOGUE["wrong_axes_channels_last"].variant, affine="ignored")
    got = M.train_forward(v, x, g, b, 1e-5)
    expected = ref.normalize(x, *ref.batch_stats(x), g, b, 1e-5)
    t0 = time.perf_counter()
    S.search("train", lambda v: M.train_forward(v, x, g, b, 1e-5), got, expected, TOL, 4)
    assert time.perf_counter() - t0 < 0.5


def test_arbitrary_axes_get_a_title_naming_the_dims():
    x, g, b = _train_case(2, _shapes(2)[0])
    expected = ref.normalize(x, *ref.batch_stats(x), g, b, 1e-5)
    got = M.train_forward(M.Variant(axes=(0, 3)), x, g, b, 1e-5)
    (d,) = S.search("train", lambda v: M.train_forward(v, x, g, b, 1e-5), got, expected, TOL, 4)
    assert d.code == "wrong_axes_dims" and "(0, 3)" in d.title["en"] and "(0, 3)" in d.title["zh"]
