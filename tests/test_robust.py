"""Robust aggregation: trimmed mean, median, ClippedGossip, one node and all nodes at once."""

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import mixing_matrix, receiver_average
from p2pfl.gossip.robust import (
    Aggregator,
    aggregate,
    aggregate_stacked,
    clip_radius,
    clipped_gossip,
    median,
    neighbourhoods,
    parse_aggregator,
    robust_mix,
    sorting_network,
    trimmed_mean,
)

SPECS = ["mean", "trimmed_mean:b=1", "trimmed_mean:b=2", "median", "clipped:delta=0.1", "clipped:tau=0.5"]


def _graph_w(n: int, seed: int) -> sp.csr_matrix:
    g = nx.gnp_random_graph(n, 0.25, seed=seed)
    g.add_edges_from((i, (i + s) % n) for i in range(n) for s in (1, 2))  # every degree >= 4
    return mixing_matrix(n, np.array(g.edges()))


def test_parse_valid_specs_round_trip():
    assert parse_aggregator("mean") == Aggregator("mean")
    assert parse_aggregator(" median ") == Aggregator("median")
    assert parse_aggregator("trimmed_mean") == Aggregator("trimmed_mean", b=1)
    assert parse_aggregator("trimmed_mean:b=3") == Aggregator("trimmed_mean", b=3)
    assert parse_aggregator("clipped") == Aggregator("clipped", delta=0.1)
    assert parse_aggregator("clipped:tau=2.5") == Aggregator("clipped", tau=2.5)
    assert parse_aggregator("clipped: delta = 0") == Aggregator("clipped", delta=0.0)
    for spec in ["mean", "median", "trimmed_mean:b=3", "clipped:tau=2.5", "clipped:delta=0.2"]:
        assert str(parse_aggregator(spec)) == spec
        assert parse_aggregator(str(parse_aggregator(spec))) == parse_aggregator(spec)
    assert parse_aggregator("trimmed_mean:b=2").min_models() == 5
    assert parse_aggregator("median").min_models() == 1


@pytest.mark.parametrize("spec,message", [
    ("mode", "unknown aggregator 'mode'; choose one of mean, trimmed_mean, median, clipped"),
    ("trimmed_mean:b=0", "trimmed_mean: b must be a positive integer, got 0"),
    ("trimmed_mean:b=-1", "trimmed_mean: b must be a positive integer, got -1"),
    ("trimmed_mean:b=1.5", "trimmed_mean: b must be a positive integer, got '1.5'"),
    ("trimmed_mean:k=1", "aggregator trimmed_mean does not take k (takes: b)"),
    ("median:b=1", "aggregator median does not take b (takes: none)"),
    ("trimmed_mean:b", "'trimmed_mean:b': parameter 'b' is not of the form key=value"),
    ("trimmed_mean:b=1,b=2", "'trimmed_mean:b=1,b=2': parameter b given twice"),
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


def test_identical_inputs_are_returned_unchanged_by_every_aggregator():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(50, generator=g)
    models = v.repeat(7, 1)
    weights = torch.rand(7, generator=g)
    for spec in SPECS:
        assert torch.allclose(aggregate(models, parse_aggregator(spec), weights), v, atol=1e-6), spec
    x = v.repeat(12, 1)
    table = neighbourhoods(_graph_w(12, seed=3))
    for spec in SPECS:
        assert torch.allclose(robust_mix(x, table, parse_aggregator(spec)), x, atol=1e-6), spec


@pytest.mark.parametrize("b", [1, 2, 3])
def test_trimmed_mean_ignores_up_to_b_huge_outliers(b):
    g = torch.Generator().manual_seed(b)
    honest = torch.randn(2 * b + 3, 40, generator=g)
    signs = torch.where(torch.rand(b, 40, generator=g) < 0.5, -1.0, 1.0)
    outliers = 1e30 * signs  # arbitrarily large, on either side, per coordinate
    models = torch.cat([honest, outliers])
    out = trimmed_mean(models, b)
    assert torch.isfinite(out).all()
    assert (out >= honest.min(dim=0).values - 1e-6).all()
    assert (out <= honest.max(dim=0).values + 1e-6).all()
    # and it is the textbook definition
    ref = models.sort(dim=0).values[b : len(models) - b].mean(dim=0)
    assert torch.allclose(out, ref, atol=1e-6)


def test_median_matches_numpy_for_odd_and_even_counts_and_ignores_a_minority_of_outliers():
    g = torch.Generator().manual_seed(2)
    for k in (1, 2, 5, 8, 11):
        models = torch.randn(k, 30, generator=g)
        assert torch.allclose(median(models), torch.from_numpy(np.median(models.numpy(), axis=0)), atol=1e-6)
    honest = torch.randn(6, 30, generator=g)
    models = torch.cat([honest, torch.full((5, 30), 1e30)])  # 5 of 11 are attackers
    out = median(models)
    assert (out <= honest.max(dim=0).values).all() and (out >= honest.min(dim=0).values).all()


def test_trimmed_mean_with_too_few_models_names_the_count():
    with pytest.raises(GossipSettingError) as err:
        trimmed_mean(torch.zeros(4, 3), 2)
    assert str(err.value) == (
        "trimmed_mean with b=2 needs at least 5 models (self and neighbours), the node has 4"
    )
    n = 10
    edges = np.array([(i, (i + 1) % n) for i in range(n)])  # ring: every node has 3 models
    table = neighbourhoods(mixing_matrix(n, edges))
    with pytest.raises(GossipSettingError) as err:
        robust_mix(torch.zeros(n, 3), table, parse_aggregator("trimmed_mean:b=2"))
    assert str(err.value) == (
        "trimmed_mean with b=2 needs at least 5 models (self and neighbours), node 0 has 3"
    )
    star = neighbourhoods(mixing_matrix(5, np.array([(0, k) for k in range(1, 5)])))
    with pytest.raises(GossipSettingError, match="node 1 has 2$"):
        robust_mix(torch.zeros(5, 3), star, parse_aggregator("trimmed_mean:b=1"))


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
    x = torch.randn(30, 16, generator=torch.Generator().manual_seed(5)) * 10
    table = neighbourhoods(_graph_w(30, seed=5))
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


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("wide", [False, True])
def test_batched_equals_one_node_at_a_time_on_an_irregular_graph(spec, wide):
    n = 40 if wide else 25
    w = mixing_matrix(n, np.array(nx.complete_graph(n).edges())) if wide else _graph_w(n, seed=7)
    x = torch.randn(n, 13, generator=torch.Generator().manual_seed(7))
    table = neighbourhoods(w)
    agg = parse_aggregator(spec)
    out = robust_mix(x, table, agg, block=4)
    for i in range(n):
        lo, hi = w.indptr[i], w.indptr[i + 1]
        nbrs = [int(j) for j in w.indices[lo:hi] if j != i]
        models = x[[i] + nbrs]
        weights = torch.tensor([w[i, i]] + [w[i, j] for j in nbrs])
        assert torch.allclose(out[i], aggregate(models, agg, weights), atol=1e-5), (spec, i)


def test_neighbour_table_of_a_directed_round_and_mean_equals_the_mixing_product():
    src = np.array([1, 2, 3, 0, 0])
    dst = np.array([0, 0, 0, 1, 2])
    w = receiver_average(4, src, dst)
    table = neighbourhoods(w)
    assert table.index.tolist() == [[0, 1, 2, 3], [1, 0, 1, 1], [2, 0, 2, 2], [3, 3, 3, 3]]
    assert table.mask.tolist() == [[True] * 4, [True, True, False, False], [True, True, False, False],
                                   [True, False, False, False]]
    assert torch.allclose(table.weight[0], torch.full((4,), 0.25))
    assert table.counts().tolist() == [4, 2, 2, 1]
    x = torch.randn(4, 6)
    expected = torch.from_numpy(w.toarray()).float() @ x
    assert torch.allclose(robust_mix(x, table, Aggregator("mean")), expected, atol=1e-6)


def test_sent_models_replace_what_neighbours_receive_but_not_the_own_model():
    n = 9
    table = neighbourhoods(mixing_matrix(n, np.array(nx.complete_graph(n).edges())))
    x = torch.zeros(n, 4)
    sent = x.clone()
    sent[3] = 1e9  # node 3 is malicious: it sends garbage to everyone
    out = robust_mix(x, table, parse_aggregator("median"), sent=sent)
    assert torch.equal(out, torch.zeros(n, 4))  # nobody moves, not even node 3 (its own row is x)
    out = robust_mix(x, table, Aggregator("mean"), sent=sent)
    assert (out[torch.arange(n) != 3] > 1e7).all() and torch.equal(out[3], torch.zeros(4))


def test_stacked_aggregation_accepts_per_receiver_attacks_and_checks_slot_zero():
    stack = torch.zeros(2, 5, 3)
    stack[0, 4] = 1e9
    stack[1, 1] = -1e9
    out = aggregate_stacked(stack, parse_aggregator("trimmed_mean:b=1"))
    assert torch.equal(out, torch.zeros(2, 3))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 0] = False
    with pytest.raises(ValueError, match="slot 0"):
        aggregate_stacked(stack, Aggregator("mean"), mask=mask)


def test_sorting_network_sorts_every_zero_one_input():
    # The 0-1 principle: a comparator network that sorts all 0/1 inputs sorts every input.
    for n in range(1, 13):
        a = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
        for i, j in sorting_network(n):
            assert i < j
            a[:, i], a[:, j] = np.minimum(a[:, i], a[:, j]), np.maximum(a[:, i], a[:, j])
        assert (np.diff(a, axis=1) >= 0).all(), n
    assert len(sorting_network(16)) == 63  # Batcher's count for 16 inputs


def test_weights_must_match_the_models():
    with pytest.raises(ValueError, match="3 weights for 4 models"):
        aggregate(torch.zeros(4, 2), Aggregator("mean"), torch.ones(3))
