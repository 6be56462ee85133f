import math

import numpy as np
import pytest
import scipy.sparse as sp

from p2pfl.gossip import mixing
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topology import NAMES, build_topology, parse_params


@pytest.mark.parametrize("n", [5, 10, 33])
def test_ring_gap_closed_form(n):
    expected = (2 / 3) * (1 - math.cos(2 * math.pi / n))
    assert build_topology("ring", n).spectral_gap() == pytest.approx(expected)


@pytest.mark.parametrize("n", [4, 10, 50])
def test_star_and_complete_gap_closed_form(n):
    assert build_topology("star", n).spectral_gap() == pytest.approx(1 / n)
    assert build_topology("complete", n).spectral_gap() == pytest.approx(1.0)


def test_sparse_solver_matches_closed_form_on_large_rings():
    # 2,000 and 10,000 nodes take the sparse path (dense limit is 1,500).
    for n in (2000, 10000):
        gap = build_topology("ring", n).spectral_gap()
        assert gap == pytest.approx((2 / 3) * (1 - math.cos(2 * math.pi / n)), rel=1e-4)


def test_sparse_and_dense_solvers_agree_on_a_random_graph(monkeypatch):
    topo = build_topology("erdos_renyi", 1600, {"p": 0.004}, seed=3)
    sparse_gap = topo.spectral_gap()
    monkeypatch.setattr(mixing, "DENSE_LIMIT", 5000)
    assert topo.spectral_gap() == pytest.approx(sparse_gap, rel=1e-6)


@pytest.mark.parametrize("scheme", ["metropolis_hastings", "max_degree"])
def test_symmetric_schemes_are_doubly_stochastic(scheme):
    w = build_topology("barabasi_albert", 40, seed=1, scheme=scheme).mixing().toarray()
    assert np.allclose(w, w.T)
    assert np.allclose(w.sum(axis=0), 1) and np.allclose(w.sum(axis=1), 1)
    assert (w >= -1e-12).all()


def test_uniform_weights_row_stochastic_and_doubly_on_regular_graphs():
    w = build_topology("star", 6, scheme="uniform").mixing().toarray()
    assert np.allclose(w.sum(axis=1), 1)
    assert np.allclose(w[0], 1 / 6)
    r = build_topology("regular", 20, {"d": 3}, seed=2, scheme="uniform").mixing().toarray()
    assert np.allclose(r.sum(axis=0), 1)


def test_exponential_neighbours_are_powers_of_two_apart():
    topo = build_topology("exponential", 16)
    assert topo.out_neighbors(0) == sorted({1, 2, 4, 8, 15, 14, 12})
    assert topo.degree_stats() == (7, 7.0, 7)


def test_hypercube_needs_power_of_two():
    assert build_topology("hypercube", 8).degree_stats() == (3, 3.0, 3)
    with pytest.raises(GossipSettingError, match="power of two"):
        build_topology("hypercube", 12)


def test_torus_shape():
    topo = build_topology("torus", 12)
    assert topo.degree_stats() == (4, 4.0, 4)
    with pytest.raises(GossipSettingError, match="does not divide"):
        build_topology("torus", 12, ["rows=5"])


def test_one_peer_exponential_averages_exactly_in_log2_rounds():
    n = 16
    topo = build_topology("one_peer_exponential", n)
    x = np.random.default_rng(0).normal(size=n)
    for t in range(4):
        assert topo.out_neighbors(3, t) == [(3 + 2**t) % n]
        x = topo.mixing(t) @ x
    assert np.allclose(x, x.mean())
    assert topo.spectral_gap() == pytest.approx(1.0)


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


def test_file_topologies(tmp_path):
    edges = tmp_path / "g.edgelist"
    edges.write_text("# a triangle plus a tail\na b\nb c\nc a\nc d\n")
    topo = build_topology(f"file:{edges}", 4)
    assert topo.degree_stats() == (1, 2.0, 3)
    import networkx as nx

    gml = tmp_path / "g.graphml"
    nx.write_graphml(nx.cycle_graph(6), gml)
    assert build_topology(f"file:{gml}", 6).spectral_gap() == pytest.approx(
        (2 / 3) * (1 - math.cos(2 * math.pi / 6)))
    with pytest.raises(GossipSettingError, match="has 4 nodes"):
        build_topology(f"file:{edges}", 5)
    with pytest.raises(GossipSettingError, match="does not exist"):
        build_topology(f"file:{tmp_path / 'nope'}", 5)


def test_disconnected_graph_has_zero_gap():
    topo = build_topology("erdos_renyi", 30, {"p": 0.0})
    assert not topo.is_connected()
    assert topo.spectral_gap() == pytest.approx(0.0, abs=1e-9)


def test_bad_names_and_params():
    with pytest.raises(GossipSettingError, match="unknown topology"):
        build_topology("mesh", 4)
    with pytest.raises(GossipSettingError, match="does not take"):
        build_topology("ring", 4, ["p=0.1"])
    with pytest.raises(GossipSettingError, match="key=value"):
        parse_params(["p"])
    assert parse_params(["p=0.5,k=3", "variant=local"]) == {"p": 0.5, "k": 3, "variant": "local"}
    with pytest.raises(GossipSettingError, match="between 1 and"):
        build_topology("epidemic", 4, {"s": 9})


def test_every_named_topology_builds_and_mixes():
    for name in NAMES:
        n = 16
        topo = build_topology(name, n, seed=1)
        w = topo.mixing(0)
        assert sp.issparse(w) and np.allclose(w.sum(axis=1), 1), name
        assert 0 <= topo.spectral_gap() <= 1, name


def test_weighted_average_renormalises():
    import torch

    a, b = torch.ones(3), torch.zeros(3)
    assert torch.allclose(mixing.weighted_average([a, b], [2.0, 2.0]), torch.full((3,), 0.5))
    with pytest.raises(ValueError):
        mixing.weighted_average([a], [float("nan")])


def test_predicted_rounds_is_never_for_a_rounding_error_gap():
    assert mixing.predicted_rounds(0.1) == pytest.approx(math.log(1000) / 0.1)
    assert mixing.predicted_rounds(3e-8) == pytest.approx(math.log(1000) / 3e-8)  # ring of 20,000
    for gap in (0.0, 4.4e-16, 5e-15, mixing.GAP_TOLERANCE, -1e-17):
        assert mixing.predicted_rounds(gap) == math.inf
    # the disconnected graph whose gap came out as 4.4e-16 and was shown as 1.04e16 rounds
    topo = build_topology("erdos_renyi", 100, ["p=0.05"], seed=0)
    assert not topo.is_connected()
    assert mixing.predicted_rounds(topo.spectral_gap()) == math.inf
