"""DP-SGD gradients and the Renyi DP accountant of the Sampled Gaussian Mechanism."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models import build_model
from p2pfl.learning.params import flatten, unflatten
from p2pfl.learning.privacy import (
    ORDERS,
    RdpAccountant,
    clip_per_example,
    dp_gradients,
    dp_gradients_stacked,
    dp_train_steps,
    epsilon,
    noise_for_epsilon,
    per_example_gradients,
    rdp_sampled_gaussian,
    rdp_to_epsilon,
    set_gradients,
)
from p2pfl.learning.trainer import OptimConfig, make_optimizer, train_steps


def _data(n: int = 12, features: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def _model():
    return build_model("mlp", 5, 3, (8,), seed=1)


def _plain_gradients(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_per_example_gradients_equal_gradients_of_single_example_losses():
    model = _model()
    x, y = _data()
    grads, losses = per_example_gradients(model, x, y)
    for b in range(len(x)):
        single = _plain_gradients(model, x[b : b + 1], y[b : b + 1])
        for name, g in single.items():
            assert torch.allclose(grads[name][b], g, atol=1e-6), (name, b)
        assert torch.isclose(losses[b], F.cross_entropy(model(x[b : b + 1]), y[b : b + 1]), atol=1e-6)


def test_clipping_bounds_every_per_example_norm_and_keeps_small_ones():
    model = _model()
    x, y = _data(20)
    grads, _ = per_example_gradients(model, x, y)
    _, norms = clip_per_example(grads, 1e9)
    clip = float(norms.median())
    clipped, before = clip_per_example(grads, clip)
    assert torch.allclose(before, norms)
    after = torch.sqrt(sum(g.reshape(len(x), -1).pow(2).sum(dim=1) for g in clipped.values()))
    assert (after <= clip * (1 + 1e-5)).all()
    small = norms <= clip
    assert small.any() and (~small).any()
    assert torch.allclose(after[small], norms[small], atol=1e-6)  # small ones are untouched
    assert torch.allclose(after[~small], torch.full_like(after[~small], clip), atol=1e-5)


def test_no_noise_and_a_huge_clip_is_plain_sgd():
    model = _model()
    x, y = _data(16)
    dp = dp_gradients(model, x, y, clip=1e9, noise=0.0)
    plain = _plain_gradients(model, x, y)
    for name in plain:
        assert torch.allclose(dp[name], plain[name], atol=1e-6)
    # whole training loops: DP-SGD with these settings takes the same steps as the trainer
    a, b = _model(), _model()
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.9)
    batches = [np.arange(0, 8), np.arange(8, 16), np.array([3, 5, 7])]
    loss_a = train_steps(a, make_optimizer(a, cfg), x, y, batches)
    loss_b = dp_train_steps(b, make_optimizer(b, cfg), x, y, batches, clip=1e9, noise=0.0)
    assert torch.allclose(flatten(a), flatten(b), atol=1e-6)
    assert math.isclose(loss_a, loss_b, rel_tol=1e-5)


def test_noise_has_the_dp_sgd_scale_and_is_seeded():
    model = _model()
    x, y = _data(10)
    clip, noise = 0.5, 3.0
    clean = dp_gradients(model, x, y, clip, 0.0)
    noisy = dp_gradients(model, x, y, clip, noise, torch.Generator().manual_seed(3))
    again = dp_gradients(model, x, y, clip, noise, torch.Generator().manual_seed(3))
    residual = torch.cat([(noisy[k] - clean[k]).reshape(-1) * len(x) for k in clean])
    # the summed gradient got N(0, (noise * clip)^2) per coordinate; ~150 coordinates
    assert abs(float(residual.std()) / (noise * clip) - 1) < 0.2
    assert abs(float(residual.mean())) < 4 * noise * clip / math.sqrt(residual.numel())
    assert all(torch.equal(noisy[k], again[k]) for k in noisy)
    # the denominator is the expected batch size under Poisson sampling when given
    half = dp_gradients(model, x, y, clip, 0.0, denominator=2 * len(x))
    assert all(torch.allclose(half[k] * 2, clean[k], atol=1e-7) for k in clean)


def test_set_gradients_feeds_the_optimizer():
    model = _model()
    x, y = _data()
    grads = dp_gradients(model, x, y, clip=1.0, noise=1.0, generator=torch.Generator().manual_seed(0))
    before = flatten(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    set_gradients(model, grads)
    opt.step()
    expected = before - 0.5 * torch.cat([grads[k].reshape(-1) for k, _ in model.named_parameters()])
    assert torch.allclose(flatten(model), expected, atol=1e-6)


def test_stacked_dp_gradients_equal_one_model_at_a_time():
    model = _model()
    n, b = 4, 6
    g = torch.Generator().manual_seed(5)
    flat = flatten(model).repeat(n, 1) + 0.1 * torch.randn(n, flatten(model).numel(), generator=g)
    x = torch.randn(n, b, 5, generator=g)
    y = torch.randint(0, 3, (n, b), generator=g)
    valid = torch.ones(n, b, dtype=torch.bool)
    valid[1, 4:] = False
    valid[3, 1:] = False
    grads, losses = dp_gradients_stacked(model, flat, x, y, valid, clip=0.3, noise=0.0)
    specs = [(name, tuple(p.shape), p.dtype) for name, p in model.named_parameters()]
    for i in range(n):
        single = copy.deepcopy(model)
        with torch.no_grad():
            for p, v in zip(single.parameters(), unflatten(flat[i], specs).values(), strict=True):
                p.copy_(v)
        rows = valid[i]
        ref = dp_gradients(single, x[i][rows], y[i][rows], clip=0.3, noise=0.0)
        assert torch.allclose(grads[i], torch.cat([ref[k].reshape(-1) for k in ref]), atol=1e-6)
        ref_loss = F.cross_entropy(single(x[i][rows]), y[i][rows])
        assert torch.isclose(losses[i], ref_loss, atol=1e-6)
    noisy, _ = dp_gradients_stacked(model, flat, x, y, valid, 0.3, 1.0, torch.Generator().manual_seed(1))
    assert not torch.allclose(noisy, grads)


# ---- accountant --------------------------------------------------------------------------------


def _rdp_by_integration(q: float, sigma: float, alpha: int) -> float:
    """D_alpha(mu || mu0) of mu = (1-q) N(0, s^2) + q N(1, s^2), mu0 = N(0, s^2), from its definition:
    log integral mu0(z) (mu(z) / mu0(z))^alpha dz / (alpha - 1), by the trapezoid rule in log space."""
    z = np.linspace(-40 * sigma, alpha + 40 * sigma, 400_001)
    log_mu0 = -(z**2) / (2 * sigma**2) - math.log(sigma * math.sqrt(2 * math.pi))
    log_ratio = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
    log_f = log_mu0 + alpha * log_ratio
    peak = log_f.max()
    integral = np.trapezoid(np.exp(log_f - peak), z)
    return (peak + math.log(integral)) / (alpha - 1)


@pytest.mark.parametrize("q,sigma,alpha", [
    (0.01, 1.1, 2), (0.01, 1.1, 8), (0.01, 1.1, 32), (0.1, 2.0, 16), (0.5, 0.8, 4), (0.05, 0.7, 64),
])
def test_rdp_matches_numerical_integration_of_the_definition(q, sigma, alpha):
    ours = float(rdp_sampled_gaussian(q, sigma, [alpha])[0])
    assert math.isclose(ours, _rdp_by_integration(q, sigma, alpha), rel_tol=1e-6)


def test_full_batch_is_the_plain_gaussian_mechanism():
    orders = [2, 3, 10, 100]
    for sigma in (0.5, 1.0, 4.0):
        assert np.allclose(rdp_sampled_gaussian(1.0, sigma, orders), np.array(orders) / (2 * sigma**2))
    # and q -> 1 from below meets it (the general formula has no special case there)
    assert np.allclose(rdp_sampled_gaussian(1 - 1e-12, 1.0, orders), np.array(orders) / 2, rtol=1e-6)


def test_order_two_closed_form_and_small_rate_expansion():
    # alpha = 2: A_2 = (1-q)^2 + 2q(1-q) + q^2 e^(1/sigma^2) = 1 + q^2 (e^(1/sigma^2) - 1), exactly.
    for q, sigma in [(0.01, 1.1), (0.3, 0.7), (0.9, 3.0)]:
        expected = math.log1p(q**2 * math.expm1(1 / sigma**2))
        assert math.isclose(float(rdp_sampled_gaussian(q, sigma, [2])[0]), expected, rel_tol=1e-9)
    # small q: eps(alpha) = (alpha / 2) q^2 (e^(1/sigma^2) - 1) + O(q^3): privacy amplification by q^2
    orders = np.array([2, 4, 8])
    leading = orders / 2 * 0.001**2 * math.expm1(1 / 2.0**2)
    assert np.allclose(rdp_sampled_gaussian(0.001, 2.0, orders), leading, rtol=0.01)


def test_epsilon_is_monotone_in_noise_steps_and_rate():
    base = dict(sample_rate=0.01, steps=1000, delta=1e-5)
    noises = [0.6, 0.8, 1.0, 1.5, 2.0, 4.0]
    eps = [epsilon(s, **base) for s in noises]
    assert all(b < a for a, b in zip(eps, eps[1:], strict=False))
    eps_steps = [epsilon(1.1, 0.01, t, 1e-5) for t in (1, 10, 100, 1000, 10_000)]
    assert all(b > a for a, b in zip(eps_steps, eps_steps[1:], strict=False))
    eps_rate = [epsilon(1.1, q, 1000, 1e-5) for q in (0.001, 0.01, 0.1, 1.0)]
    assert all(b > a for a, b in zip(eps_rate, eps_rate[1:], strict=False))
    assert epsilon(1.1, 0.01, 1000, 1e-3) < epsilon(1.1, 0.01, 1000, 1e-6)
    assert epsilon(1.1, 0.01, 0, 1e-5) == 0.0


def test_epsilon_is_the_minimum_over_orders_of_the_conversion():
    rdp = 500 * rdp_sampled_gaussian(0.02, 1.3)
    eps, order = rdp_to_epsilon(ORDERS, rdp, 1e-5)
    by_hand = [r + math.log(1e5) / (a - 1) for a, r in zip(ORDERS, rdp, strict=True)]
    assert math.isclose(eps, min(by_hand)) and 2 < order < 256
    assert eps == epsilon(1.3, 0.02, 500, 1e-5)
    improved = epsilon(1.3, 0.02, 500, 1e-5, improved=True)
    assert 0 < improved < eps


def test_one_gaussian_release_by_hand():
    # One full-batch Gaussian release: RDP alpha / (2 sigma^2), so with the standard conversion
    # eps = min_alpha alpha / (2 sigma^2) + log(1/delta) / (alpha - 1), found here by brute force.
    sigma, delta = 5.0, 1e-5
    expected = min(a / (2 * sigma**2) + math.log(1 / delta) / (a - 1) for a in range(2, 257))
    assert math.isclose(epsilon(sigma, 1.0, 1, delta), expected, rel_tol=1e-12)


def test_accountant_composes_heterogeneous_steps():
    acc = RdpAccountant()
    assert acc.epsilon(1e-5) == 0.0
    acc.step(1.1, 0.01, 300)
    acc.step(1.1, 0.01, 700)
    assert math.isclose(acc.epsilon(1e-5), epsilon(1.1, 0.01, 1000, 1e-5), rel_tol=1e-12)
    acc.step(0.8, 0.05, 10)
    assert acc.epsilon(1e-5) > epsilon(1.1, 0.01, 1000, 1e-5)


def test_noise_for_epsilon_inverts_epsilon():
    sigma = noise_for_epsilon(2.0, 0.01, 2000, 1e-5)
    assert epsilon(sigma, 0.01, 2000, 1e-5) <= 2.0
    assert epsilon(sigma * 0.999, 0.01, 2000, 1e-5) > 2.0 * 0.99


@pytest.mark.parametrize("call,message", [
    (lambda: epsilon(0.0, 0.01, 100, 1e-5), "epsilon target with no noise"),
    (lambda: epsilon(-1.0, 0.01, 100, 1e-5), "epsilon target with no noise"),
    (lambda: RdpAccountant().step(0.0, 0.01), "epsilon target with no noise"),
    (lambda: epsilon(1.0, 0.0, 100, 1e-5), "sampling rate must be in \\(0, 1\\], got 0.0"),
    (lambda: epsilon(1.0, 0.01, 100, 1.0), "delta must be in \\(0, 1\\), got 1.0"),
    (lambda: epsilon(1.0, 0.01, -1, 1e-5), "steps must be a non-negative integer, got -1"),
    (lambda: noise_for_epsilon(0.0, 0.01, 100, 1e-5), "epsilon target must be a positive number"),
    (lambda: dp_gradients(_model(), *_data(), clip=0.0, noise=1.0), "clipping norm must be a positive"),
    (lambda: dp_gradients(_model(), *_data(), clip=1.0, noise=-1.0), "noise multiplier must be a non-neg"),
])
def test_bad_privacy_settings_are_user_errors(call, message):
    with pytest.raises(LearningSettingError, match=message):
        call()
