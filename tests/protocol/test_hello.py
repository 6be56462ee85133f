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
OURS = consortium_of({"roster": [["a", A], ["b", B]], "training": {"lr": 0.05}, "gossip": {"min_peers": -1}})
THEIRS = consortium_of({"roster": [["a", A], ["b", B]], "training": {"lr": 0.1}, "gossip": {"min_peers": -1}})


def test_round_trip_gives_the_senders_consortium():
    message = hello.pack(ALICE, OURS, Role.HELLO, recipient=B)
    assert len(message) <= hello.MAX_SIZE
    got = hello.parse(message, sender=A, recipient=B, role=Role.HELLO)
    assert got == OURS and got.sections == OURS.sections
    assert hello.frame(message)[:2] == len(message).to_bytes(2, "big")


def test_another_consortium_names_the_differing_section():
    reply = hello.pack(BOB, THEIRS, Role.REPLY, recipient=A)
    got = hello.parse(reply, sender=B, recipient=A, role=Role.REPLY)
    reason = differences(got.id, got.sections, OURS)
    assert reason is not None and "different settings in training" in reason
    assert "different settings in training (" in reason  # training only
    assert differences(OURS.id, OURS.sections, OURS) is None


@pytest.mark.parametrize("sender, recipient, role", [
    (B, B, Role.HELLO),  # signed by Alice, claimed by Bob
    (A, A, Role.HELLO),  # meant for Bob, replayed to another node
])
def test_bad_signature(sender, recipient, role):
    message = hello.pack(ALICE, OURS, Role.HELLO, recipient=B)
    with pytest.raises(BadSignature):
        hello.parse(message, sender=sender, recipient=recipient, role=role)


def test_a_flipped_byte_fails_the_signature():
    message = bytearray(hello.pack(ALICE, OURS, Role.HELLO, recipient=B))
    message[-70] ^= 1  # inside the last digest
    with pytest.raises(BadSignature):
        hello.parse(bytes(message), sender=A, recipient=B, role=Role.HELLO)


def test_a_reply_is_not_a_hello():
    message = hello.pack(ALICE, OURS, Role.REPLY, recipient=B)
    with pytest.raises(InvalidMessage, match="role"):
        hello.parse(message, sender=A, recipient=B, role=Role.HELLO)


@pytest.mark.parametrize("cut", [1, 10, 64, 100])
def test_truncated(cut):
    message = hello.pack(ALICE, OURS, Role.HELLO, recipient=B)
    with pytest.raises(InvalidMessage):
        hello.parse(message[:-cut], sender=A, recipient=B, role=Role.HELLO)


def test_wrong_size():
    message = hello.pack(ALICE, OURS, Role.HELLO, recipient=B)
    with pytest.raises(InvalidMessage, match="bytes"):
        hello.parse(message + bytes(hello.MAX_SIZE), sender=A, recipient=B, role=Role.HELLO)
    with pytest.raises(InvalidMessage, match="bytes after its sections"):
        hello.parse(message[:-64] + b"x" + message[-64:], sender=A, recipient=B, role=Role.HELLO)
    with pytest.raises(InvalidMessage, match="not a p2pfl hello"):
        hello.parse(b"XXXX" + message[4:], sender=A, recipient=B, role=Role.HELLO)


def test_the_largest_consortium_fits():
    biggest = consortium_of({("s" * 31 + chr(ord("a") + i)): i for i in range(16)})
    message = hello.pack(ALICE, biggest, Role.HELLO, recipient=B)
    assert len(message) == hello.MAX_SIZE
    assert hello.parse(message, sender=A, recipient=B, role=Role.HELLO) == biggest
