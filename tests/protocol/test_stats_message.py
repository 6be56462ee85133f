"""The statistics message and bundle: round trip, and every way a peer's bytes can be wrong."""

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import stats_message as sm
from p2pfl.protocol.identity import peer_id_of, sign
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(1, 4)]
MEMBERS = [peer_id_of(k) for k in KEYS]
CID = bytes(range(32))
OTHER = bytes(range(1, 33))
VALUES = np.array([120.0, 3.5, -0.25, 1e-300, 7.0])
L = len(VALUES)


def parse(data: bytes, cid: bytes = CID, n_values: int = L):
    return sm.parse(data, cid, MEMBERS, n_values)


def forged(key, origin: int, raw_values: bytes, count: int, cid: bytes = CID) -> bytes:
    """A message built by hand and signed by `key`: what a member could send past `pack`."""
    body = sm.HEAD.pack(sm.MAGIC, sm.VERSION, cid, origin, count) + raw_values
    return body + sign(key, sm.CONTEXT + body)


def test_round_trip_is_bit_exact():
    message = sm.pack(KEYS[1], CID, 1, VALUES)
    assert len(message) == sm.message_size(L) == 4 + 1 + 32 + 2 + 4 + 8 * L + 64
    assert message[:4] == b"P2ST" and message[37:39] == b"\x00\x01"  # origin, big-endian
    origin, got = parse(message)
    assert origin == 1 and got.dtype == np.float64
    assert got.tobytes() == VALUES.tobytes()
    assert sm.values_of(message).tobytes() == VALUES.tobytes()


def test_the_signature_covers_the_context():
    message = sm.pack(KEYS[0], CID, 0, VALUES)
    body = message[:-64]
    assert message[-64:] == sign(KEYS[0], sm.CONTEXT + body)


@pytest.mark.parametrize("delta", [-1, 1, -64])
def test_wrong_size_is_refused_first(delta):
    message = sm.pack(KEYS[0], CID, 0, VALUES)
    data = message[:delta] if delta < 0 else message + b"\0" * delta
    with pytest.raises(InvalidMessage, match="bytes"):
        parse(data)
    with pytest.raises(InvalidMessage, match="bytes"):  # size before magic
        parse(b"XXXX" + data[4:])


def test_bad_magic_or_version():
    message = sm.pack(KEYS[0], CID, 0, VALUES)
    with pytest.raises(InvalidMessage, match="not a p2pfl statistics message"):
        parse(b"P2HI" + message[4:])
    with pytest.raises(InvalidMessage, match="version 9"):
        parse(message[:4] + b"\x09" + message[5:])


def test_origin_out_of_range():
    message = sm.pack(KEYS[0], CID, 3, VALUES)  # three members: 0 to 2
    with pytest.raises(InvalidMessage, match="origin 3 is not a member index"):
        parse(message)


def test_a_tampered_value_fails_the_signature():
    message = bytearray(sm.pack(KEYS[2], CID, 2, VALUES))
    message[sm.HEAD.size + 3] ^= 0x10  # inside the first value
    with pytest.raises(BadSignature):
        parse(bytes(message))


def test_a_message_claimed_for_another_member_fails_the_signature():
    message = bytearray(sm.pack(KEYS[0], CID, 0, VALUES))
    message[37:39] = b"\x00\x01"  # a relay relabels member 0's vector as member 1's
    with pytest.raises(BadSignature, match="member 1"):
        parse(bytes(message))


def test_another_consortium_names_both_ids():
    message = sm.pack(KEYS[0], OTHER, 0, VALUES)
    with pytest.raises(ProtocolViolation, match=f"{OTHER.hex()[:8]}.*{CID.hex()[:8]}"):
        parse(message)


def test_a_nan_signed_by_the_member_is_refused():
    raw = VALUES.copy()
    raw[2] = np.nan
    message = forged(KEYS[1], 1, raw.astype(">f8").tobytes(), L)
    with pytest.raises(ProtocolViolation, match="NaN"):
        parse(message)
    raw[2] = np.inf
    with pytest.raises(ProtocolViolation, match="NaN or infinite"):
        parse(forged(KEYS[1], 1, raw.astype(">f8").tobytes(), L))


def test_a_value_count_that_lies():
    # the right size for L values, but the header claims L - 1: signed by the member
    message = forged(KEYS[0], 0, VALUES.astype(">f8").tobytes(), L - 1)
    assert len(message) == sm.message_size(L)
    with pytest.raises(ProtocolViolation, match=f"carry {L - 1} values"):
        parse(message)


def test_pack_refuses_what_every_peer_would_refuse():
    with pytest.raises(ValueError, match="NaN"):
        sm.pack(KEYS[0], CID, 0, np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="1-D"):
        sm.pack(KEYS[0], CID, 0, np.ones((2, 2)))
    with pytest.raises(ValueError, match="member index"):
        sm.pack(KEYS[0], CID, 70000, VALUES)


def test_value_bound_is_refused_before_anything_else():
    with pytest.raises(ValueError, match="values"):
        sm.message_size(sm.MAX_VALUES + 1)
    with pytest.raises(ValueError, match="values"):
        sm.parse(b"", CID, MEMBERS, sm.MAX_VALUES + 1)
    with pytest.raises(ValueError, match="values"):
        sm.split_bundle(b"\x00\x00", sm.MAX_VALUES + 1, 3)


def test_bundle_round_trip():
    messages = [sm.pack(k, CID, i, VALUES * (i + 1)) for i, k in enumerate(KEYS)]
    bundle = sm.pack_bundle(messages)
    assert len(bundle) == sm.bundle_size(L, 3)
    assert sm.split_bundle(bundle, L, 3) == messages
    assert sm.split_bundle(sm.pack_bundle([]), L, 3) == []


def test_bundle_count_and_size_lies():
    messages = [sm.pack(k, CID, i, VALUES) for i, k in enumerate(KEYS)]
    bundle = sm.pack_bundle(messages)
    with pytest.raises(InvalidMessage, match="claims 3 messages .at most 2."):
        sm.split_bundle(bundle, L, 2)
    with pytest.raises(InvalidMessage, match="expected"):
        sm.split_bundle(struct.pack(">H", 2) + bundle[2:], L, 3)  # says 2, holds 3
    with pytest.raises(InvalidMessage, match="expected"):
        sm.split_bundle(struct.pack(">H", 60000) + bundle[2:], L, 65535)  # says many, holds 3
    with pytest.raises(InvalidMessage, match="expected"):
        sm.split_bundle(bundle[:-1], L, 3)
    with pytest.raises(InvalidMessage, match="shorter than its count"):
        sm.split_bundle(b"\x01", L, 3)
