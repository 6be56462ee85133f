"""Catching up after a restart needs the word of a quorum of in-neighbours (rounds.py docstring)."""

from __future__ import annotations

import pytest
import torch
from test_rounds import ROUNDS, Network, _machine, _update

from p2pfl.protocol.rounds import Aggregate, Checkpoint, Held, Reject, RoundMachine, Train


def _own(net: Network, i: int = 0) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.models[i].named_parameters()}


def _shifted(state: dict[str, torch.Tensor], by: float) -> dict[str, torch.Tensor]:
    return {k: v + by for k, v in state.items()}


def test_one_member_claiming_the_last_round_moves_no_one():
    net = Network()
    m = _machine(net, 0)  # ring of 5: in-neighbours of node 0 are 1 and 4
    actions = m.update_received(_update(net, 1, ROUNDS - 1))
    assert actions == [Held(net.ids[1], ROUNDS - 1, witnesses=1, quorum=2)]
    assert m.round == 0
    # repeating the claim is no more evidence
    (again,) = m.update_received(_update(net, 1, ROUNDS - 1))
    assert isinstance(again, Reject) and again.dropped
    # the node goes on with its own rounds: train, send, deadline, aggregate alone
    (send,) = m.local_model_ready(0, _own(net))
    (agg,) = m.deadline_passed(0)
    assert agg.catch_up_to is None and m.round == 0
    nxt = m.aggregated(0, _own(net))
    assert [type(a) for a in nxt] == [Checkpoint, Train]
    assert nxt[0].round == 1 and nxt[0].caught_up_from is None


def test_two_witnesses_make_a_restarted_node_catch_up_through_the_aggregator():
    net = Network()
    m = _machine(net, 0)
    own = _own(net)
    m.params = own
    assert [type(a) for a in m.update_received(_update(net, 1, 5, tensors=_shifted(own, 3.0)))] == [Held]
    held, agg = m.update_received(_update(net, 4, 4, tensors=_shifted(own, 6.0)))
    assert held == Held(net.ids[4], 4, witnesses=2, quorum=2)
    # the 2nd highest claim is round 4: both vouch for round 4 or later
    assert isinstance(agg, Aggregate) and agg.catch_up_to == 4 and agg.round == 0
    assert agg.senders == (net.ids[1], net.ids[4])
    assert agg.weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert torch.equal(agg.states[0]["0.bias"], own["0.bias"])  # the checkpointed model
    # training of the abandoned round finishing late changes nothing
    assert m.local_model_ready(0, own) == []
    mixed = _shifted(own, 3.0)  # what the driver's aggregator returned
    ckpt, train = m.aggregated(0, mixed)
    assert ckpt.round == 4 and ckpt.caught_up_from == 0 and ckpt.witnesses == (net.ids[1], net.ids[4])
    assert isinstance(train, Train) and train.round == 4 and m.round == 4
    # node 4's round-4 update counts as its round-4 contribution; node 1's (round 5) is buffered
    m.local_model_ready(4, mixed)
    assert 4 in m.pending and net.ids[4] in m.pending[4]
    assert net.ids[1] in m.pending.get(5, {})
    (late,) = m.update_received(_update(net, 1, 0))
    assert "stale" in late.reason


def test_quorum_follows_the_aggregators_tolerance():
    net = Network(topology="complete")  # in-neighbours of node 0: 1, 2, 3, 4
    from p2pfl.learning.params import param_specs

    m = RoundMachine(net.ids[0], net.ids, net.topo, param_specs(net.template), _own(net),
                     rounds=ROUNDS, quorum=3)  # trimmed_mean:b=2
    m.start()
    for sender in (1, 2):
        actions = m.update_received(_update(net, sender, ROUNDS - 1))
        assert [type(a) for a in actions] == [Held]
    assert m.round == 0
    held, agg = m.update_received(_update(net, 3, 4))
    assert agg.catch_up_to == 4 and held.witnesses == 3
    with pytest.raises(ValueError, match="at least 2"):
        RoundMachine(net.ids[0], net.ids, net.topo, param_specs(net.template), {}, quorum=1)


def test_evidence_inside_the_window_is_dropped_not_used():
    net = Network()
    m = _machine(net, 0)
    m.update_received(_update(net, 1, 3))  # 3 > 0 + max_ahead: evidence
    assert net.ids[1] in m.claims
    for r in range(2):  # two rounds alone by deadline
        m.local_model_ready(r, _own(net))
        m.deadline_passed(r)
        m.aggregated(r, _own(net))
    # a member cannot fix its round-3 contribution in advance: its round-3 update still counts
    assert m.round == 2 and not m.claims and 3 not in m.pending
    assert m.update_received(_update(net, 1, 3)) == []
    assert net.ids[1] in m.pending[3]


def test_catch_up_waits_for_a_running_aggregation():
    net = Network()
    m = _machine(net, 0)
    m.local_model_ready(0, _own(net))
    (agg,) = m.deadline_passed(0)  # aggregating round 0 when the evidence arrives
    assert m.update_received(_update(net, 1, 5))[1:] == []
    assert m.update_received(_update(net, 4, 5))[1:] == []
    ckpt, jump = m.aggregated(0, _own(net))
    assert ckpt.round == 1 and ckpt.caught_up_from is None
    assert isinstance(jump, Aggregate) and jump.catch_up_to == 5 and jump.round == 1
