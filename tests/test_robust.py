"""The aggregation engine: parsing, registry, neighbour tables, batched = one node at a time.

Each rule's own tests are in tests/aggregators/test_agg_<name>.py."""

import pickle

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.mixing import mixing_matrix, receiver_average
from p2pfl.gossip.robust import (
    AGGREGATORS,
    Aggregator,
    aggregate,
    aggregate_stacked,
    neighbourhoods,
    parse_aggregator,
    robust_mix,
    sorting_network,
)

# every registered rule with its defaults, and a few parameter variants
SPECS = sorted({*AGGREGATORS.names(), "trimmed_mean:b=1", "trimmed_mean:b=2", "clipped:delta=0.1",
                "clipped:tau=0.5"})


def _graph_w(n: int, seed: int) -> sp.csr_matrix:
    g = nx.gnp_random_graph(n, 0.25, seed=seed)
    g.add_edges_from((i, (i + s) % n) for i in range(n) for s in (1, 2))  # every degree >= 4
    return mixing_matrix(n, np.array(g.edges()))


def test_parse_valid_specs_round_trip():
    for spec in ["mean", "median", "trimmed_mean:b=3", "clipped:tau=2.5", "clipped:delta=0.2"]:
        assert str(parse_aggregator(spec)) == spec
        assert parse_aggregator(str(parse_aggregator(spec))) == parse_aggregator(spec)
    for name in AGGREGATORS.names():  # every member: the defaults round-trip, hash and pickle
        agg = parse_aggregator(name)
        assert agg.name == name and parse_aggregator(str(agg)) == agg
        assert hash(agg) == hash(parse_aggregator(str(agg)))
        assert pickle.loads(pickle.dumps(agg)) == agg
        assert agg.min_models() >= 1 and agg.tolerates() >= 0
    assert {"mean", "trimmed_mean", "median", "clipped"} <= set(AGGREGATORS.names())
    assert [a.name for a in AGGREGATORS if a.linear] == ["mean"]


def test_aggregators_are_frozen_and_name_their_parameters():
    agg = parse_aggregator("trimmed_mean:b=2")
    with pytest.raises(AttributeError):
        agg.name = "mean"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="has no parameter 'tau'"):
        _ = agg.tau
    assert Aggregator("clipped", tau=0.5, delta=None) == parse_aggregator("clipped:tau=0.5")
    with pytest.raises(GossipSettingError, match="aggregator median does not take b"):
        Aggregator("median", b=1)


@pytest.mark.parametrize("spec,message", [
    ("mode", f"unknown aggregator 'mode'; choose one of {AGGREGATORS.choices()}"),
    ("trimmed_mean:b", "'trimmed_mean:b': parameter 'b' is not of the form key=value"),
    ("trimmed_mean:b=1,b=2", "'trimmed_mean:b=1,b=2': parameter b given twice"),
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
