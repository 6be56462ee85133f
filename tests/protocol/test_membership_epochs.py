"""Roster epochs in the round machine: neighbours, mixing rows and membership per round."""

from types import SimpleNamespace

import pytest
import torch

from p2pfl.gossip.topology import build_topology
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.protocol.rounds import Done, Epoch, Reject, RoundMachine, Send, Train

IDS = [peer_id_of(generate_key()) for _ in range(6)]
FIVE, SIX = IDS[:5], IDS[:6]


def machine(self_id: str, members=FIVE, **kwargs) -> RoundMachine:
    return RoundMachine(self_id, list(members), build_topology("complete", len(members)), [], {},
                        rounds=30, validate=lambda u: {}, **kwargs)


def update(sender: str, round: int) -> SimpleNamespace:
    """What the machine reads of a checked update."""
    return SimpleNamespace(sender=sender, round=round)


def test_an_epoch_changes_neighbours_and_weights_from_its_round_on():
    m = machine(IDS[0])
    m.schedule(Epoch(10, tuple(SIX), build_topology("complete", 6)))
    assert m.in_peers(9) == FIVE[1:] and m.in_peers(10) == SIX[1:]
    assert m.mixing_row(9)[IDS[0]] == pytest.approx(1 / 5)
    assert m.mixing_row(10)[IDS[5]] == pytest.approx(1 / 6)
    assert IDS[5] not in m.mixing_row(9)
    # the newcomer's update is refused before its epoch, taken from it on
    m.round = 8
    [reject] = m.update_received(update(IDS[5], 9))
    assert isinstance(reject, Reject) and "not a member of the roster in round 9" in reject.reason
    assert m.update_received(update(IDS[5], 10)) == []  # buffered for round 10


def test_a_removed_member_is_done_at_its_epoch_and_its_updates_refused():
    gone = IDS[4]
    m = machine(IDS[0])
    m.schedule(Epoch(20, tuple(FIVE[:4]), build_topology("complete", 4)))
    m.round = 20
    [reject] = m.update_received(update(gone, 20))
    assert "not a member of the roster in round 20" in reject.reason
    removed = machine(gone)
    removed.schedule(Epoch(20, tuple(FIVE[:4]), build_topology("complete", 4)))
    removed.round = 20
    assert removed.start() == [Done(20)] and removed.out_peers(20) == [] and not removed.member_of(20)


def test_a_member_admitted_mid_run_begins_at_its_epoch():
    joiner = machine(IDS[5], members=SIX)
    params = {"w": torch.ones(2)}
    joiner.join_at(10, params)
    [train] = joiner.start()
    assert isinstance(train, Train) and train.round == 10 and train.params is params
    [send] = joiner.local_model_ready(10, params)[:1]
    assert isinstance(send, Send) and set(send.peers) == set(SIX[:5])


def test_an_epoch_must_start_in_the_future():
    m = machine(IDS[0])
    m.round = 10
    with pytest.raises(ValueError, match="not in the future"):
        m.schedule(Epoch(10, tuple(SIX), build_topology("complete", 6)))
    with pytest.raises(ValueError, match="topology has 5 nodes"):
        Epoch(12, tuple(SIX), build_topology("complete", 5))
