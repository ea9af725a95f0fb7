"""The reference against torch (values and gradients, micrograd-style), and the mistake
variants against the reference: the course formula is what torch computes once the
conventions are translated, and every known mistake is far from it on the checks' inputs."""
import pytest
import torch
import torch.nn.functional as F

from grader.checks import inputs as I
from grader.checks import mistakes as M
from reference import batchnorm as ref

SHAPES = [(2, 3, 3, 5), (3, 4, 2, 4), (2, 5), (6, 3)]


def _torch_bn(x, gamma, beta, eps):
    C = x.shape[1]
    return F.batch_norm(x, None, None, gamma.reshape(C), beta.reshape(C), training=True, eps=eps)


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_torch_values_and_grads(shape):
    gen = I.generator(1)
    C, nd = shape[1], len(shape)
    gamma, beta = I.make_affine(gen, C)
    x = I.make_x(gen, shape, torch.float64).requires_grad_(True)
    w = I.make_weights(gen, shape)
    ours = ref.BatchNorm2d(C, nd).double()
    with torch.no_grad():
        ours.gamma.copy_(I.shaped(gamma, nd))
        ours.beta.copy_(I.shaped(beta, nd))
    g = I.shaped(gamma, nd).clone().requires_grad_(True)
    b = I.shaped(beta, nd).clone().requires_grad_(True)
    y_ours = ours(x)
    y_torch = _torch_bn(x, g, b, 1e-5)
    torch.testing.assert_close(y_ours, y_torch)
    d_ours = torch.autograd.grad((y_ours * w).sum(), [x, ours.gamma, ours.beta])
    d_torch = torch.autograd.grad((y_torch * w).sum(), [x, g, b])
    for a, t in zip(d_ours, d_torch):
        torch.testing.assert_close(a, t)


def test_running_stats_are_torch_with_momentum_flipped_and_biased_var():
    gen = I.generator(2)
    C = 4
    ours = ref.BatchNorm2d(C, 4, momentum=0.7).double()
    rm, rv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for _ in range(3):
        x = I.make_x(gen, (2, C, 3, 5), torch.float64)
        ours(x)
        # torch.nn: moving = (1 - m) * moving + m * batch with m = 1 - decay, unbiased var
        F.batch_norm(x, rm, rv, training=True, momentum=0.3)
    torch.testing.assert_close(ours.moving_mean.reshape(C), rm)
    n = 2 * 3 * 5
    # the unbiased running var of torch is the biased one scaled, step by step
    rv_biased = torch.ones(C, dtype=torch.float64)
    gen = I.generator(2)
    for _ in range(3):
        x = I.make_x(gen, (2, C, 3, 5), torch.float64)
        rv_biased = 0.7 * rv_biased + 0.3 * x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(ours.moving_var.reshape(C), rv_biased)
    assert not torch.allclose(rv, rv_biased)  # the two conventions really differ here
    # and torch's is the same recursion on the batch variance scaled by n / (n - 1)
    rv_unbiased = torch.ones(C, dtype=torch.float64)
    gen = I.generator(2)
    for _ in range(3):
        x = I.make_x(gen, (2, C, 3, 5), torch.float64)
        rv_unbiased = 0.7 * rv_unbiased + 0.3 * x.var(dim=(0, 2, 3), unbiased=False) * n / (n - 1)
    torch.testing.assert_close(rv, rv_unbiased)


def test_reference_eval_uses_running_stats_and_grad_mode_switches():
    ref_bn = ref.BatchNorm2d(3, 4)
    x = torch.randn(2, 3, 4, 4)
    ref_bn.eval()
    y_eval = ref_bn(x)
    torch.testing.assert_close(y_eval, x / torch.sqrt(torch.tensor(1 + 1e-5)))
    ref_bn.train()
    with torch.no_grad():
        torch.testing.assert_close(ref_bn(x), y_eval)
    torch.testing.assert_close(ref_bn.moving_mean, torch.zeros(1, 3, 1, 1))


@pytest.mark.parametrize("shape", SHAPES)
def test_default_variant_is_the_reference(shape):
    gen = I.generator(3)
    C, nd = shape[1], len(shape)
    gamma, beta = (I.shaped(t, nd) for t in I.make_affine(gen, C))
    x = I.make_x(gen, shape, torch.float64)
    torch.testing.assert_close(M.train_forward(M.Variant(), x, gamma, beta, 1e-5),
                               ref.normalize(x, *ref.batch_stats(x), gamma, beta, 1e-5))
    mm, mv = M.running_update(M.Variant(), torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64),
                              x, 0.9)
    bm, bv = ref.batch_stats(x)
    torch.testing.assert_close(mm, 0.1 * bm.reshape(C))
    torch.testing.assert_close(mv, 0.9 + 0.1 * bv.reshape(C))


FORWARD = ["wrong_axes", "wrong_axes_instance", "wrong_axes_batch", "wrong_axes_global", "wrong_axes_channels_last",
           "no_keepdim", "unbiased_var_in_norm", "eps_outside_sqrt", "eps_missing", "gamma_beta_ignored",
           "gamma_beta_swapped", "beta_multiplied", "affine_last_axis", "running_in_train_norm"]
AXES_4D = {"wrong_axes_instance", "wrong_axes_batch", "wrong_axes_channels_last", "no_keepdim", "affine_last_axis"}


@pytest.mark.parametrize("seed", range(25))
def test_every_forward_mistake_is_far_from_the_reference(seed):
    # on the checks' inputs, for any seed: a mistake is never within 100x the tolerance
    gen = I.generator(seed)
    C = I.num_channels(gen)
    for shape in [(2, C, 3, C + 2), (3, C, 2, C), (2, C), (5, C)]:
        nd = len(shape)
        gamma, beta = (I.shaped(t, nd) for t in I.make_affine(gen, C))
        x = I.make_x(gen, shape, torch.float32).double()
        good = ref.normalize(x, *ref.batch_stats(x), gamma, beta, 1e-5)
        for code in FORWARD:
            try:
                bad = M.train_forward(M.CATALOGUE[code].variant, x, gamma, beta, 1e-5)
            except (ValueError, RuntimeError):
                continue  # a (C,) tensor cannot broadcast along W != C: the submission raises instead
            if nd == 2 and code in AXES_4D:
                continue  # these mistakes act on the 4-D branch only
            gap = (bad - good).abs().max().item()
            assert gap > 100 * (1e-5 + 1.3e-6 * good.abs().max().item()), (code, shape, gap)


@pytest.mark.parametrize("seed", range(25))
def test_every_running_mistake_is_far_from_the_reference(seed):
    gen = I.generator(seed)
    C = I.num_channels(gen)
    for momentum in (0.9, 0.7):
        x = I.make_x(gen, (2, C, 3, C + 2), torch.float32).double()
        start = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
        good = M.running_update(M.Variant(), *start, x, momentum)
        codes = ["reversed_momentum", "running_overwritten", "running_not_updated", "std_in_running_var",
                 "momentum_ignored_reversed"]
        if momentum != 0.9:
            codes.append("momentum_ignored")
        for code in codes:
            bad = M.running_update(M.CATALOGUE[code].variant, *start, x, momentum)
            gap = max((b - g).abs().max().item() for b, g in zip(bad, good))
            assert gap > 1e-3, (code, momentum, gap)


@pytest.mark.parametrize("seed", range(25))
def test_eps_mistakes_show_with_the_tiny_variance_channel(seed):
    gen = I.generator(seed)
    C = I.num_channels(gen)
    gamma, beta = (I.shaped(t, 4) for t in I.make_affine(gen, C))
    x = I.make_x(gen, (2, C, 3, C + 2), torch.float64)
    for eps, code in ((1e-5, "eps_outside_sqrt"), (1e-5, "eps_missing"), (0.1, "eps_arg_ignored")):
        good = ref.normalize(x, *ref.batch_stats(x), gamma, beta, eps)
        bad = M.train_forward(M.CATALOGUE[code].variant, x, gamma, beta, eps)
        assert (bad - good).abs().max().item() > 1e-2, code


def test_inputs_have_exactly_the_designed_statistics():
    gen = I.generator(5)
    mean, var = I.channel_stats(gen, 4)
    x = I.make_x(gen, (2, 4, 3, 5), torch.float64, mean, var)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), mean)
    torch.testing.assert_close(x.var(dim=(0, 2, 3), unbiased=False), var)
    assert (mean.abs() >= 0.05).all() and var.min() == pytest.approx(1e-4)


def test_lenet_sgd_is_torch_sgd():
    # grader/training/lenet.py's SGD avoids torch.optim's import cost; it must update identically
    from grader.training.lenet import SGD, LeNet5
    torch.manual_seed(0)
    a, b = LeNet5(), LeNet5()
    b.load_state_dict(a.state_dict())
    ours = SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    theirs = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=n)
