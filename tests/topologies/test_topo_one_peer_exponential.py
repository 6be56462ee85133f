"""The one_peer_exponential topology."""


import numpy as np
import pytest

from p2pfl.gossip.topology import build_topology


def test_one_peer_exponential_averages_exactly_in_log2_rounds():
    n = 16
    topo = build_topology("one_peer_exponential", n)
    x = np.random.default_rng(0).normal(size=n)
    for t in range(4):
        assert topo.out_neighbors(3, t) == [(3 + 2**t) % n]
        x = topo.mixing(t) @ x
    assert np.allclose(x, x.mean())
    assert topo.spectral_gap() == pytest.approx(1.0)
