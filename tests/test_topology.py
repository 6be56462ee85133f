import math

import numpy as np
import pytest
import scipy.sparse as sp

from p2pfl.gossip import mixing, spectral
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topologies import TOPOLOGIES
from p2pfl.gossip.topology import build_topology, parse_params


def test_sparse_solver_matches_closed_form_on_large_rings():
    # 2,000 and 10,000 nodes take the sparse path (dense limit is 1,500).
    for n in (2000, 10000):
        gap = build_topology("ring", n).spectral_gap()
        assert gap == pytest.approx((2 / 3) * (1 - math.cos(2 * math.pi / n)), rel=1e-4)


def test_sparse_and_dense_solvers_agree_on_a_random_graph(monkeypatch):
    topo = build_topology("erdos_renyi", 1600, {"p": 0.004}, seed=3)
    sparse_gap = topo.spectral_gap()
    monkeypatch.setattr(spectral, "DENSE_LIMIT", 5000)
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
    for name in TOPOLOGIES.names():
        if TOPOLOGIES.get(name).argument:
            continue
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


def test_registry_lists_every_topology_and_refuses_others():
    assert {"ring", "epidemic", "file"} <= set(TOPOLOGIES.names())
    with pytest.raises(GossipSettingError, match="unknown topology 'mesh'; choose one of .*file:PATH.*ring"):
        build_topology("mesh", 4)
    with pytest.raises(GossipSettingError, match="unknown topology 'ring:x'"):
        build_topology("ring:x", 4)  # ring takes no argument
    with pytest.raises(GossipSettingError, match="does not take q"):
        build_topology("ring", 4, {"q": 1})
