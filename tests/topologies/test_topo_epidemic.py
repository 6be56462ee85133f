"""The epidemic topology."""


import numpy as np
import pytest

from p2pfl.gossip.topology import build_topology


@pytest.mark.parametrize("variant", ["oracle", "local"])
def test_epidemic_sends_to_s_distinct_peers(variant):
    topo = build_topology("epidemic", 50, {"s": 5, "variant": variant}, seed=7)
    for t in range(3):
        src, dst = topo.edges(t)
        assert (np.bincount(src, minlength=50) == 5).all()
        assert (src != dst).all()
        assert len(set(zip(src.tolist(), dst.tolist(), strict=True))) == len(src)
        w = topo.mixing(t).toarray()
        assert np.allclose(w.sum(axis=1), 1)
        if variant == "oracle":
            assert (np.bincount(dst, minlength=50) == 5).all()
            assert np.allclose(w.sum(axis=0), 1)


def test_time_varying_graphs_are_deterministic_per_seed_and_round():
    a = build_topology("epidemic", 30, seed=4)
    b = build_topology("epidemic", 30, seed=4)
    assert a.out_neighbors(2, 9) == b.out_neighbors(2, 9)
    assert a.out_neighbors(2, 9) != build_topology("epidemic", 30, seed=5).out_neighbors(2, 9) or \
        a.out_neighbors(2, 8) != a.out_neighbors(2, 9)
    assert a.edges(0)[0].tolist() != [] and a.in_neighbors(0, 1) == b.in_neighbors(0, 1)


def test_epidemic_default_s_is_log2_n():
    assert build_topology("epidemic", 64).params["s"] == 6
