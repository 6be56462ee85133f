"""Spectral gaps: exact paths, the bounded Lanczos estimate, determinism at large sizes."""

import math

import numpy as np
import pytest

from p2pfl.gossip import spectral
from p2pfl.gossip.topology import build_topology


def _dense_gap(topo) -> float:
    ev = np.linalg.eigvalsh(topo.mixing(0).toarray())
    return 1.0 - max(abs(ev[-2]), abs(ev[0]))


@pytest.mark.parametrize(("name", "n", "params"), [
    ("regular", 300, None), ("barabasi_albert", 250, None), ("torus", 240, None),
    ("watts_strogatz", 200, {"k": 6, "p": 0.2}), ("star", 120, None), ("hypercube", 256, None),
])
def test_lanczos_agrees_with_dense_eigenvalues(monkeypatch, name, n, params):
    topo = build_topology(name, n, params, seed=3)
    monkeypatch.setattr(spectral, "DENSE_LIMIT", 0)
    gap = topo.gap()
    assert gap.method == "lanczos" and gap.converged
    assert gap.value == pytest.approx(_dense_gap(topo), abs=1e-6)


@pytest.mark.parametrize(("name", "n"), [("ring", 101), ("ring", 64), ("exponential", 100),
                                         ("exponential", 128)])
def test_circulant_graphs_take_the_exact_fourier_path(monkeypatch, name, n):
    topo = build_topology(name, n)
    monkeypatch.setattr(spectral, "DENSE_LIMIT", 0)
    gap = topo.gap()
    assert gap.method == "circulant"
    assert gap.value == pytest.approx(_dense_gap(topo), abs=1e-12)


def test_a_non_circulant_pattern_is_not_taken_for_one():
    assert spectral.circulant_row(build_topology("torus", 30, {"rows": 5}).mixing(0)) is None
    assert spectral.circulant_row(build_topology("star", 30).mixing(0)) is None


def test_time_varying_lanczos_agrees_with_dense(monkeypatch):
    topo = build_topology("epidemic", 200, seed=2)
    dense = topo.gap(samples=4)
    monkeypatch.setattr(spectral, "DENSE_LIMIT", 0)
    estimate = topo.gap(samples=4)
    assert estimate.method == "lanczos" and estimate.converged
    assert estimate.value == pytest.approx(dense.value, abs=1e-6)


def test_large_graphs_are_deterministic_and_cheap():
    # 50,000 nodes: the ring is circulant (exact), the random regular graph takes Lanczos, which
    # converges here; either way the same value on every call, with three vectors of memory.
    ring = build_topology("ring", 50_000)
    assert ring.gap().value == pytest.approx((2 / 3) * (1 - math.cos(2 * math.pi / 50_000)), rel=1e-9)
    regular = build_topology("regular", 50_000, seed=0)
    first, again = regular.gap(), regular.gap()
    assert first == again and first.method == "lanczos"
    assert 0.05 < first.value < 0.2  # random 4-regular: 1 - (1 + 2 sqrt 3) / 5 = 0.107 in the limit


def test_a_run_cut_off_at_the_cap_is_an_upper_bound_and_says_so(monkeypatch):
    topo = build_topology("torus", 2500, seed=0)  # slow mixing: Lanczos needs hundreds of steps
    exact = topo.gap()
    monkeypatch.setattr(spectral, "MAX_PRODUCTS", 32)
    cut = topo.gap()
    assert not cut.converged and cut.residual > spectral.TOLERANCE and cut.steps == 32
    assert cut.value >= exact.value
    assert "upper bound" in cut.describe()
