"""The clipped aggregator: ClippedGossip with a fixed or adaptive radius."""

import networkx as nx
import numpy as np
import pytest
import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import mixing_matrix
from p2pfl.gossip.robust import (
    Aggregator,
    aggregate,
    clip_radius,
    clipped_gossip,
    neighbourhoods,
    parse_aggregator,
    robust_mix,
)


def test_parse_round_trip():
    assert parse_aggregator("clipped") == Aggregator("clipped", delta=0.1)
    assert parse_aggregator("clipped:tau=2.5") == Aggregator("clipped", tau=2.5)
    assert parse_aggregator("clipped: delta = 0") == Aggregator("clipped", delta=0.0)
    for spec in ["clipped:tau=2.5", "clipped:delta=0.2"]:
        assert str(parse_aggregator(spec)) == spec
    agg = parse_aggregator("clipped:tau=2.5")
    assert agg.tau == 2.5 and agg.delta is None and agg.tolerates() == 0 and not agg.is_linear


@pytest.mark.parametrize("spec,message", [
    ("clipped:tau=1,delta=0.1", "clipped: give exactly one of tau (fixed radius) or delta (adaptive)"),
    ("clipped:tau=0", "clipped: tau must be a positive number, got 0.0"),
    ("clipped:tau=inf", "clipped: tau must be a positive number, got inf"),
    ("clipped:delta=1", "clipped: delta must be a number in [0, 1), got 1.0"),
    ("clipped:delta=x", "clipped: delta must be a number, got 'x'"),
])
def test_parse_rejects_bad_specs_with_one_clear_message(spec, message):
    with pytest.raises(GossipSettingError) as err:
        parse_aggregator(spec)
    assert str(err.value) == message


def test_fixed_clipping_bounds_each_nodes_movement_by_tau():
    g = torch.Generator().manual_seed(4)
    own = torch.randn(20, generator=g)
    others = own + 100.0 * torch.randn(6, 20, generator=g)
    models = torch.cat([own[None], others])
    weights = torch.rand(7, generator=g)
    for tau in (0.01, 0.3, 2.0):
        out = clipped_gossip(models, weights, tau=tau)
        assert torch.linalg.vector_norm(out - own) <= tau * (1 + 1e-5)
    # a radius larger than every distance is plain weighted gossip
    out = clipped_gossip(models, weights, tau=1e9)
    ref = (weights / weights.sum()) @ models
    assert torch.allclose(out, ref, atol=1e-4)


def test_clipping_bounds_movement_by_tau_for_every_node_of_a_network():
    n = 30
    g = nx.gnp_random_graph(n, 0.25, seed=5)
    g.add_edges_from((i, (i + s) % n) for i in range(n) for s in (1, 2))
    x = torch.randn(n, 16, generator=torch.Generator().manual_seed(5)) * 10
    table = neighbourhoods(mixing_matrix(n, np.array(g.edges())))
    out = robust_mix(x, table, parse_aggregator("clipped:tau=0.25"))
    assert (torch.linalg.vector_norm(out - x, dim=1) <= 0.25 * (1 + 1e-5)).all()


def test_adaptive_radius_is_the_weighted_quantile_of_distances():
    d = torch.tensor([[3.0, 1.0, 4.0, 2.0]])
    w = torch.full((1, 4), 0.25)
    assert clip_radius(d, w, 0.0).item() == 4.0  # nothing clipped
    assert clip_radius(d, w, 0.25).item() == 3.0  # the farthest quarter of the weight is clipped
    assert clip_radius(d, w, 0.3).item() == 3.0
    assert clip_radius(d, w, 0.5).item() == 2.0
    # weight, not count, decides
    assert clip_radius(d, torch.tensor([[0.1, 0.1, 0.7, 0.1]]), 0.5).item() == 4.0  # far one holds 0.7
    assert clip_radius(d, torch.tensor([[0.1, 0.7, 0.1, 0.1]]), 0.25).item() == 2.0  # near one holds 0.7
    # zero-weight entries (padding) never set the radius
    d0 = torch.tensor([[0.0, 0.0, 5.0, 6.0]])
    assert clip_radius(d0, torch.tensor([[0.0, 0.0, 0.5, 0.5]]), 0.5).item() == 5.0


def test_adaptive_clipping_bounds_attackers_by_the_farthest_honest_neighbour():
    g = torch.Generator().manual_seed(6)
    own = torch.randn(25, generator=g)
    honest = own + torch.randn(8, 25, generator=g)
    attackers = own + 1e6 * torch.randn(2, 25, generator=g)
    models = torch.cat([own[None], honest, attackers])
    weights = torch.full((11,), 1 / 11)
    out = clipped_gossip(models, weights, delta=0.2)  # attackers hold 2 of 10 neighbour weights
    far = torch.linalg.vector_norm(honest - own, dim=1).max()
    assert torch.linalg.vector_norm(out - own) <= far * 10 / 11 + 1e-4
    # without clipping the attackers drag the node far away
    assert torch.linalg.vector_norm(aggregate(models, Aggregator("mean")) - own) > 1e4
