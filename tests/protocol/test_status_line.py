"""The status line: round trip, order, and every way a peer's bytes can be wrong."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import status_line as sl
from p2pfl.protocol.identity import peer_id_of, sign
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation
from p2pfl.protocol.status_line import State, StatusLine

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(1, 4)]
MEMBERS = [peer_id_of(k) for k in KEYS]
CID = bytes(range(32))
ROUNDS = 30


def parse(data: bytes, cid: bytes = CID) -> StatusLine:
    return sl.parse(data, cid, MEMBERS, ROUNDS)


def forged(key, origin: int, round: int, state: int, cid: bytes = CID) -> bytes:
    """A line built by hand and signed by `key`: what a member could send past `pack`."""
    body = sl.BODY.pack(sl.MAGIC, sl.VERSION, cid, origin, round, state, 1)
    return body + sign(key, sl.CONTEXT + body)


def test_round_trip():
    line = StatusLine(2, 7, State.EXCHANGING, 1_700_000_000_123)
    raw = sl.pack(KEYS[2], CID, line)
    assert len(raw) == sl.LINE_SIZE == 4 + 1 + 32 + 2 + 4 + 1 + 8 + 64
    assert parse(raw) == line
    assert State.WAITING_FOR_PEERS.label == "waiting for peers"


def test_a_later_round_then_state_then_time_is_newer():
    base = StatusLine(0, 5, State.TRAINING, 100)
    assert base.newer_than(None)
    assert StatusLine(0, 6, State.STARTING, 0).newer_than(base)
    assert StatusLine(0, 5, State.EXCHANGING, 0).newer_than(base)
    assert StatusLine(0, 5, State.TRAINING, 101).newer_than(base)
    assert not base.newer_than(base) and not StatusLine(0, 4, State.DONE, 999).newer_than(base)


def test_an_altered_byte_or_another_members_key_fails_the_signature():
    raw = bytearray(sl.pack(KEYS[0], CID, StatusLine(0, 3, State.TRAINING, 5)))
    raw[42] ^= 1  # the round
    with pytest.raises(BadSignature):
        parse(bytes(raw))
    with pytest.raises(BadSignature, match="member 1"):  # member 0 signs a line claiming to be 1's
        parse(forged(KEYS[0], 1, 3, int(State.TRAINING)))


@pytest.mark.parametrize("data, error, match", [
    (b"\0" * (sl.LINE_SIZE - 1), InvalidMessage, "bytes"),
    (b"XXXX" + b"\0" * (sl.LINE_SIZE - 4), InvalidMessage, "not a p2pfl status line"),
    (forged(KEYS[0], 3, 1, 1), InvalidMessage, "not a member index"),
    (forged(KEYS[0], 0, 1, 1, cid=bytes(32)), ProtocolViolation, "consortium"),
    (forged(KEYS[1], 1, ROUNDS + 1, 1), ProtocolViolation, "round 31 of 30"),
    (forged(KEYS[1], 1, 2, 99), ProtocolViolation, "unknown state 99"),
])
def test_bad_lines_are_refused_saying_why(data, error, match):
    with pytest.raises(error, match=match):
        parse(data)


def test_a_bundle_count_is_checked_against_the_roster_before_the_lines_are_read():
    bundle = sl.pack_bundle([sl.pack(KEYS[0], CID, StatusLine(0, 1, State.TRAINING, 1))])
    assert sl.bundle_count(bundle[:2], len(MEMBERS)) == 1 and len(bundle) == 2 + sl.LINE_SIZE
    with pytest.raises(InvalidMessage, match="claims 4 lines"):
        sl.bundle_count(sl.COUNT.pack(4), len(MEMBERS))
