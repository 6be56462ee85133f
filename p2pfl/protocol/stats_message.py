"""The statistics message: one member's signed aggregates, flooded to every member before round 0.

Each member of a consortium signs its own vector of aggregates (row count, per column counts,
means and variances, category counts: p2pfl.learning.preprocess builds it; here it is an opaque
float64 vector whose length the plan fixes). Nodes relay the messages they hold, so the
signature is over the originator's key, not the relay's: a relay cannot alter a contribution,
only withhold it. Pure: no I/O (p2pfl.net.agreement carries it).

Wire format (big-endian):

    magic b"P2ST" | version (u8) | consortium id (32 bytes) | origin member index (u16)
    | value count (u32) | values (float64 each) | Ed25519 signature (64 bytes)

The signature covers CONTEXT + every byte before it; the key is the one in the peer ID of the
roster member at the origin index. A bundle (what one pull returns) is a u16 count followed by
that many messages, all of the same size.
"""

from __future__ import annotations

import struct

import numpy as np

from p2pfl.protocol.consortium import DIGEST_SIZE, SHORT_ID
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    InvalidPeerId,
    public_key_from_peer_id,
    sign,
    verify,
)
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation

MAGIC = b"P2ST"
VERSION = 1
CONTEXT = b"p2pfl statistics v1\0"
SIGNATURE_SIZE = 64
HEAD = struct.Struct(">4sB32sHI")
COUNT = struct.Struct(">H")  # a bundle's message count
VALUE = np.dtype(">f8")
MAX_VALUES = 1_000_000  # values in one message (8 MB); bounds every size computed from it
MAX_ORIGIN = 0xFFFF  # the largest member index a u16 holds


def message_size(n_values: int) -> int:
    """Bytes of a message carrying `n_values` values (ValueError beyond MAX_VALUES)."""
    if not 0 <= n_values <= MAX_VALUES:
        raise ValueError(f"a statistics message carries 0 to {MAX_VALUES:,} values, not {n_values:,}")
    return HEAD.size + n_values * VALUE.itemsize + SIGNATURE_SIZE


def bundle_size(n_values: int, max_count: int) -> int:
    """The largest bundle of at most `max_count` messages of `n_values` values each."""
    return COUNT.size + max_count * message_size(n_values)


def pack(key: Ed25519PrivateKey, consortium_id: bytes, origin: int, values: np.ndarray) -> bytes:
    """The message of member `origin` (its index in the roster, whose key is `key`) carrying
    `values` for the consortium `consortium_id`. ValueError for values that are not a finite
    1-D vector: the member would only be refused by every peer."""
    vector = np.asarray(values)
    if vector.ndim != 1 or not np.issubdtype(vector.dtype, np.floating):
        raise ValueError(f"statistics are a 1-D float vector, not shape {vector.shape} {vector.dtype}")
    message_size(len(vector))  # the bound
    if not np.isfinite(vector).all():
        raise ValueError("statistics hold a NaN or infinite value")
    if not 0 <= origin <= MAX_ORIGIN:
        raise ValueError(f"member index {origin} is not 0 to {MAX_ORIGIN}")
    if len(consortium_id) != DIGEST_SIZE:
        raise ValueError(f"a consortium id is {DIGEST_SIZE} bytes, not {len(consortium_id)}")
    body = HEAD.pack(MAGIC, VERSION, consortium_id, origin, len(vector)) + vector.astype(VALUE).tobytes()
    return body + sign(key, CONTEXT + body)


def parse(data: bytes, consortium_id: bytes, members: list[str], n_values: int) -> tuple[int, np.ndarray]:
    """(origin, values) of a message of this consortium, signed by the member at its origin.

    InvalidMessage says what is wrong: BadSignature if the signature does not verify (altered
    on the way, or forged), ProtocolViolation if it does but the content breaks the protocol
    (another consortium, another length, a non-finite value: the origin member is to blame)."""
    expected = message_size(n_values)
    data = bytes(data)
    if len(data) != expected:
        raise InvalidMessage(f"statistics message is {len(data)} bytes (expected {expected} "
                             f"for {n_values} values)")
    magic, version, cid, origin, count = HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise InvalidMessage(f"not a p2pfl statistics message (magic {magic!r}, version {version})")
    if origin >= len(members):
        raise InvalidMessage(f"statistics origin {origin} is not a member index (0 to {len(members) - 1})")
    try:
        public = public_key_from_peer_id(members[origin])
    except InvalidPeerId as exc:
        raise InvalidMessage(str(exc)) from None
    body_end = len(data) - SIGNATURE_SIZE
    if not verify(public, CONTEXT + data[:body_end], data[body_end:]):
        raise BadSignature(f"statistics signature does not verify against member {origin} "
                           f"({members[origin]})")
    if cid != consortium_id:
        raise ProtocolViolation(f"statistics of consortium {cid.hex()[:SHORT_ID]}, not this "
                                f"node's {consortium_id.hex()[:SHORT_ID]}")
    if count != n_values:
        raise ProtocolViolation(f"statistics carry {count} values, the plan has {n_values}")
    values = _values(data, count)
    if not np.isfinite(values).all():
        raise ProtocolViolation(f"statistics of member {origin} hold a NaN or infinite value")
    return origin, values


def values_of(message: bytes) -> np.ndarray:
    """The values of a message that `parse` accepted (no checks here)."""
    return _values(message, HEAD.unpack_from(message)[4])


def _values(data: bytes, count: int) -> np.ndarray:
    return np.frombuffer(data, dtype=VALUE, count=count, offset=HEAD.size).astype(np.float64)


def pack_bundle(messages: list[bytes]) -> bytes:
    """The messages as one bundle: their count, then each of them."""
    if len(messages) > 0xFFFF:
        raise ValueError(f"a bundle holds at most {0xFFFF} messages, not {len(messages)}")
    return COUNT.pack(len(messages)) + b"".join(messages)


def split_bundle(data: bytes, n_values: int, max_count: int) -> list[bytes]:
    """The messages of a bundle of at most `max_count` messages of `n_values` values each;
    the size is checked against the count before any slicing (InvalidMessage)."""
    size = message_size(n_values)
    data = bytes(data)
    if len(data) < COUNT.size:
        raise InvalidMessage(f"statistics bundle is {len(data)} bytes, shorter than its count")
    (count,) = COUNT.unpack_from(data)
    if count > max_count:
        raise InvalidMessage(f"statistics bundle claims {count} messages (at most {max_count})")
    if len(data) != COUNT.size + count * size:
        raise InvalidMessage(f"statistics bundle of {count} messages is {len(data)} bytes "
                             f"(expected {COUNT.size + count * size})")
    return [data[COUNT.size + i * size : COUNT.size + (i + 1) * size] for i in range(count)]
