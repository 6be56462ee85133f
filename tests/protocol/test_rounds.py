"""The round state machine, driven by a deterministic in-memory event loop."""

from __future__ import annotations

import pytest
import torch
from memory_network import ROUNDS, N, Network

from p2pfl.gossip.topology import build_topology
from p2pfl.learning.params import flatten, param_specs
from p2pfl.learning.trainer import OptimConfig
from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import generate_key
from p2pfl.protocol.rounds import (
    Aggregate,
    Done,
    Reject,
    RoundMachine,
    Send,
    Train,
)
from p2pfl.sim.reference import ReferenceEngine


def _reference_params(net: Network) -> torch.Tensor:
    """The simulator's reference engine on the same data, batches and topology."""
    ref = ReferenceEngine(net.template, net.data, OptimConfig("sgd", lr=0.05), flatten(net.template))
    for t in range(ROUNDS):
        ref.local_round(net.plan.round(t))
        ref.mix(net.topo.mixing(t))
    return ref.params()


def test_five_node_ring_matches_reference_engine():
    net = Network()
    net.run()
    assert (net.params() - _reference_params(net)).abs().max().item() < 1e-5
    assert all(net.checkpoints[i] == list(range(1, ROUNDS + 1)) for i in range(N))
    assert sum(isinstance(a, Done) for _, a in net.log) == N
    assert not [a for _, a in net.log if isinstance(a, Reject)]


def test_time_varying_topology_matches_reference_engine():
    net = Network(topology="epidemic")
    net.run()
    assert (net.params() - _reference_params(net)).abs().max().item() < 1e-5


def test_silent_node_others_advance_at_deadline_with_renormalised_weights():
    net = Network(silent={1: {2}})
    net.run()
    assert all(m.round == ROUNDS for m in net.machines)
    partial = [(i, a) for i, a in net.log if isinstance(a, Aggregate) and a.missing]
    # in round 1 nodes 1 and 3 (node 2's ring neighbours) went on without it
    assert sorted(i for i, a in partial) == [1, 3]
    for _, a in partial:
        assert a.round == 1 and a.missing == (net.ids[2],)
        assert len(a.states) == 2 and sum(a.weights) == pytest.approx(1.0)
        assert a.weights == pytest.approx((0.5, 0.5))  # 1/3 and 1/3, renormalised


def _machine(net: Network, i: int = 0) -> RoundMachine:
    m = net.machines[i]
    m.start()
    return m


def _update(net: Network, sender: int, round: int, tensors=None, fp=None):
    tensors = tensors or {k: v.detach() for k, v in net.models[sender].named_parameters()}
    return decode(bytes(encode(net.keys[sender], consortium=consortium_of({}), round=round,
                               fingerprint=fp or net.fp, num_samples=1, weight=1.0, tensors=tensors)))


def test_rejects_strangers_non_neighbours_stale_duplicates_and_bad_models():
    net = Network()
    m = _machine(net, 0)  # ring: in-neighbours of node 0 are 1 and 4
    stranger = generate_key()
    wire = encode(stranger, consortium=consortium_of({}), round=0, fingerprint=net.fp, num_samples=1,
                  weight=1.0, tensors=dict(net.models[0].named_parameters()))
    (r,) = m.update_received(decode(bytes(wire)))
    assert isinstance(r, Reject) and "not a member" in r.reason and not r.dropped
    (r,) = m.update_received(_update(net, 2, 0))
    assert "not an in-neighbour" in r.reason
    assert m.update_received(_update(net, 1, 0)) == []  # buffered while training
    (r,) = m.update_received(_update(net, 1, 0))
    assert "duplicate" in r.reason and r.dropped
    (r,) = m.update_received(_update(net, 4, 0, fp="0" * 64))
    assert "fingerprint" in r.reason
    bad = {k: v.detach().clone() for k, v in net.models[4].named_parameters()}
    bad["0.weight"][0, 0] = float("nan")
    (r,) = m.update_received(_update(net, 4, 0, tensors=bad))
    assert "NaN" in r.reason
    (r,) = m.update_received(_update(net, 4, ROUNDS + 1))
    assert "past the last round" in r.reason
    # the good update from node 1 is still there: once node 4's arrives, the round aggregates
    own = {k: v.detach() for k, v in net.models[0].named_parameters()}
    (send,) = m.local_model_ready(0, own)
    assert isinstance(send, Send) and set(send.peers) == {net.ids[1], net.ids[4]}
    (agg,) = m.update_received(_update(net, 4, 0))
    assert isinstance(agg, Aggregate) and agg.senders == (net.ids[1], net.ids[4]) and not agg.missing
    assert agg.weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    m.aggregated(0, own)
    (r,) = m.update_received(_update(net, 1, 0))
    assert "stale" in r.reason and r.dropped


def test_future_updates_are_buffered_and_used_in_their_round():
    net = Network()
    m = _machine(net, 0)
    assert m.update_received(_update(net, 1, 1)) == []
    assert m.update_received(_update(net, 4, 1)) == []
    own = {k: v.detach() for k, v in net.models[0].named_parameters()}
    m.local_model_ready(0, own)
    (agg,) = m.deadline_passed(0)
    assert agg.missing == (net.ids[1], net.ids[4])
    assert agg.weights == (1.0,)
    m.aggregated(0, own)
    actions = m.local_model_ready(1, own)
    assert isinstance(actions[0], Send) and isinstance(actions[1], Aggregate)
    assert not actions[1].missing


def test_resume_from_a_checkpoint_round():
    net = Network()
    specs = param_specs(net.template)
    m = RoundMachine(net.ids[0], net.ids, net.topo, specs, {}, start_round=4, rounds=ROUNDS)
    (train,) = m.start()
    assert isinstance(train, Train) and train.round == 4
    done = RoundMachine(net.ids[0], net.ids, net.topo, specs, {}, start_round=ROUNDS, rounds=ROUNDS)
    assert done.start() == [Done(ROUNDS)]
    with pytest.raises(ValueError, match="not in the roster"):
        RoundMachine("someone", net.ids, net.topo, specs, {})
    with pytest.raises(ValueError, match="topology has"):
        RoundMachine(net.ids[0], net.ids, build_topology("ring", 4), specs, {})

