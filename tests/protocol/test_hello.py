"""The start hello: round trip, and every way a peer's bytes can be wrong."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import hello
from p2pfl.protocol.consortium import consortium_of, differences
from p2pfl.protocol.hello import Role
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.messages import BadSignature, InvalidMessage

ALICE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
BOB = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
A, B = peer_id_of(ALICE), peer_id_of(BOB)
OUR_PLAN = {"roster": [["a", A], ["b", B]], "training": {"lr": 0.05, "rounds": 5},
            "task": {"classes": ["no", "yes"]}, "gossip": {"min_peers": -1}}
THEIR_PLAN = {"roster": [["a", A], ["b", B]], "training": {"lr": 0.1, "rounds": 5},
              "task": {"classes": ["yes", "no"]}, "gossip": {"min_peers": -1}}
OURS, THEIRS = consortium_of(OUR_PLAN), consortium_of(THEIR_PLAN)


def test_round_trip_gives_the_senders_consortium():
    message = hello.pack(ALICE, OURS, OUR_PLAN, Role.HELLO, recipient=B)
    assert len(message) <= hello.MAX_SIZE
    got = hello.parse(message, sender=A, recipient=B, role=Role.HELLO)
    assert got.consortium == OURS and got.consortium.sections == OURS.sections
    assert got.plan == OUR_PLAN
    assert hello.frame(message)[:4] == len(message).to_bytes(4, "big")


def test_another_consortium_names_the_differing_section():
    reply = hello.pack(BOB, THEIRS, THEIR_PLAN, Role.REPLY, recipient=A)
    got = hello.parse(reply, sender=B, recipient=A, role=Role.REPLY)
    reason = differences(got.consortium.id, got.consortium.sections, OURS)
    assert reason is not None and "different settings in task, training (" in reason
    assert differences(OURS.id, OURS.sections, OURS) is None


def test_with_both_plans_the_keys_that_differ_are_named_with_both_values():
    reply = hello.pack(BOB, THEIRS, THEIR_PLAN, Role.REPLY, recipient=A)
    got = hello.parse(reply, sender=B, recipient=A, role=Role.REPLY)
    reason = differences(got.consortium.id, got.consortium.sections, OURS, got.plan, OUR_PLAN)
    assert "task.classes: ['no', 'yes'] here, ['yes', 'no'] at the peer" in reason
    assert "training.lr: 0.05 here, 0.1 at the peer" in reason
    assert "rounds" not in reason and "min_peers" not in reason  # only what differs


def test_a_plan_that_is_not_the_consortiums_is_refused_on_both_sides():
    with pytest.raises(ValueError, match="not the one"):
        hello.pack(ALICE, OURS, THEIR_PLAN, Role.HELLO, recipient=B)
    message = bytearray(hello.pack(ALICE, OURS, OUR_PLAN, Role.HELLO, recipient=B))
    at = message.index(b"0.05")
    message[at:at + 4] = b"0.06"  # the plan no longer hashes to its digest (and the signature breaks)
    with pytest.raises(BadSignature):
        hello.parse(bytes(message), sender=A, recipient=B, role=Role.HELLO)
    with pytest.raises(InvalidMessage, match="section 'training' does not match its digest"):
        hello._plan(bytes(message[message.index(b'{"gossip"'):-64]), OURS.sections)
    with pytest.raises(InvalidMessage, match="not canonical JSON"):
        hello._plan(b"[" * 100_000, OURS.sections)


@pytest.mark.parametrize("sender, recipient, role", [
    (B, B, Role.HELLO),  # signed by Alice, claimed by Bob
    (A, A, Role.HELLO),  # meant for Bob, replayed to another node
])
def test_bad_signature(sender, recipient, role):
    message = hello.pack(ALICE, OURS, OUR_PLAN, Role.HELLO, recipient=B)
    with pytest.raises(BadSignature):
        hello.parse(message, sender=sender, recipient=recipient, role=role)


def test_a_flipped_byte_fails_the_signature():
    message = bytearray(hello.pack(ALICE, OURS, OUR_PLAN, Role.HELLO, recipient=B))
    message[-70] ^= 1  # inside the last digest
    with pytest.raises(BadSignature):
        hello.parse(bytes(message), sender=A, recipient=B, role=Role.HELLO)


def test_a_reply_is_not_a_hello():
    message = hello.pack(ALICE, OURS, OUR_PLAN, Role.REPLY, recipient=B)
    with pytest.raises(InvalidMessage, match="role"):
        hello.parse(message, sender=A, recipient=B, role=Role.HELLO)


@pytest.mark.parametrize("cut", [1, 10, 64, 100])
def test_truncated(cut):
    message = hello.pack(ALICE, OURS, OUR_PLAN, Role.HELLO, recipient=B)
    with pytest.raises(InvalidMessage):
        hello.parse(message[:-cut], sender=A, recipient=B, role=Role.HELLO)


def test_wrong_size():
    message = hello.pack(ALICE, OURS, OUR_PLAN, Role.HELLO, recipient=B)
    with pytest.raises(InvalidMessage, match="bytes"):
        hello.parse(message + bytes(hello.MAX_SIZE), sender=A, recipient=B, role=Role.HELLO)
    with pytest.raises(InvalidMessage, match="plan of .* does not fit the message"):
        hello.parse(message[:-64] + b"x" + message[-64:], sender=A, recipient=B, role=Role.HELLO)
    with pytest.raises(InvalidMessage, match="not a p2pfl hello"):
        hello.parse(b"XXXX" + message[4:], sender=A, recipient=B, role=Role.HELLO)


def test_the_largest_consortium_fits():
    names = ["s" * 31 + chr(ord("a") + i) for i in range(16)]
    filler = "x" * (hello.MAX_PLAN - 16 * 40 - 200)
    plan = {name: (filler if i == 0 else i) for i, name in enumerate(names)}
    pad = hello.MAX_PLAN - len(hello.canonical_json(plan))
    plan[names[0]] = filler + "x" * pad
    biggest = consortium_of(plan)
    message = hello.pack(ALICE, biggest, plan, Role.HELLO, recipient=B)
    assert len(message) == hello.MAX_SIZE
    assert hello.parse(message, sender=A, recipient=B, role=Role.HELLO).consortium == biggest
    plan[names[0]] += "x"
    with pytest.raises(ValueError, match="more than a hello carries"):
        hello.pack(ALICE, consortium_of(plan), plan, Role.HELLO, recipient=B)
