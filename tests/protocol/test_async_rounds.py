"""The asynchronous round machine: no barrier, the newest model of each in-neighbour, staleness."""

from types import SimpleNamespace

import pytest
import torch

from p2pfl.gossip.staleness import async_row, discounts
from p2pfl.gossip.topology import build_topology
from p2pfl.protocol.async_rounds import AsyncMachine
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.protocol.rounds import Aggregate, Checkpoint, Done, Reject, Send, Train

IDS = [peer_id_of(generate_key()) for _ in range(3)]


def machine(**kwargs) -> AsyncMachine:
    return AsyncMachine(IDS[0], IDS, build_topology("complete", 3), [], {"w": torch.zeros(1)}, rounds=10,
                        validate=lambda u: {"w": torch.full((1,), float(u.round))}, **kwargs)


def update(sender: str, round: int) -> SimpleNamespace:
    return SimpleNamespace(sender=sender, round=round)


def test_the_staleness_rule():
    assert discounts([0, 1, 3, 5], alpha=1.0, max_staleness=4).tolist() == [1.0, 0.5, 0.25, 0.0]
    assert discounts([-2], alpha=0.5, max_staleness=4).tolist() == [1.0]  # newer than ours: age 0
    w = async_row(1 / 3, [(1 / 3, 0), (1 / 3, 3)], alpha=1.0, max_staleness=4)
    assert w == pytest.approx((4 / 9, 4 / 9, 1 / 9)) and sum(w) == pytest.approx(1.0)  # 1/3, 1/3, 1/12
    assert async_row(0.5, [(0.5, 9)], alpha=1.0, max_staleness=4) == (1.0, 0.0)
    assert async_row(1.0, [], 0.5, 4) == (1.0,)


def test_a_node_never_waits_and_mixes_the_newest_model_of_each_neighbour_by_its_age():
    m = machine(alpha=1.0)
    [train] = m.start()
    assert isinstance(train, Train) and train.round == 0
    # nothing held: send, and "mix" with itself alone
    send, agg = m.local_model_ready(0, {"w": torch.ones(1)})
    assert isinstance(send, Send) and set(send.peers) == set(IDS[1:])
    assert isinstance(agg, Aggregate) and agg.weights == (1.0,) and set(agg.missing) == set(IDS[1:])
    checkpoint, train = m.aggregated(0, {"w": torch.ones(1)})
    assert isinstance(checkpoint, Checkpoint) and checkpoint.round == 1 and train.round == 1
    assert m.update_received(update(IDS[1], 1)) == [] and m.update_received(update(IDS[2], 0)) == []
    [reject] = m.update_received(update(IDS[1], 0))  # older than the one held from it
    assert isinstance(reject, Reject) and reject.dropped and "holds round 1" in reject.reason
    m.round, m.training = 3, True
    _, agg = m.local_model_ready(3, {"w": torch.ones(1)})
    # ages 2 (from IDS[1], round 1) and 3 (IDS[2], round 0): weights 1/3, 1/3 / 3, 1/3 / 4, renormalised
    raw = [1 / 3, 1 / 9, 1 / 12]
    assert agg.senders == (IDS[1], IDS[2])
    assert agg.weights == pytest.approx(tuple(r / sum(raw) for r in raw))


def test_a_model_past_the_staleness_bound_counts_nothing_and_is_not_even_read():
    m = machine(max_staleness=2)
    m.update_received(update(IDS[1], 0))
    m.round, m.training = 5, True
    _, agg = m.local_model_ready(5, {"w": torch.ones(1)})
    assert agg.senders == () and agg.weights == (1.0,)
    assert "more than 2 rounds old are left out" in m.refusal(IDS[2], 2)
    assert m.refusal(IDS[2], 3) is None
    assert "past the last round" in m.refusal(IDS[2], 10)


def test_done_after_the_last_round():
    m = machine()
    m.round = 10
    assert m.start() == [Done(10)]
