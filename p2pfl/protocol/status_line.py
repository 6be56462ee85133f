"""The status line: a member's signed word of the round it is at, gossiped so that every node can
show the round of members that are not its neighbours (`p2pfl status`). Pure: no I/O
(p2pfl.net.status_gossip carries it).

Wire format (big-endian, fixed length LINE_SIZE):

    magic b"P2SL" | version (u8) | consortium id (32 bytes) | origin member index (u16)
    | round (u32: rounds done) | state (u8: State) | time (u64: the origin's clock, ms since
    the epoch) | Ed25519 signature (64 bytes)

The signature covers CONTEXT + every byte before it, with the key in the peer ID of the roster
member at the origin index, so a relay cannot alter another member's line, only withhold it or
replay an older one (a node keeps the newest it has seen: `newer`). A line only informs the
operator: no node ever acts on another's line. A bundle is a u16 count and that many lines.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from p2pfl.protocol.consortium import DIGEST_SIZE, SHORT_ID
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    InvalidPeerId,
    public_key_from_peer_id,
    sign,
    verify,
)
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation

MAGIC = b"P2SL"
VERSION = 1
CONTEXT = b"p2pfl status line v1\0"
SIGNATURE_SIZE = 64
BODY = struct.Struct(">4sB32sHIBQ")
LINE_SIZE = BODY.size + SIGNATURE_SIZE
COUNT = struct.Struct(">H")
MAX_ROUND = 0xFFFFFFFF


class State(enum.IntEnum):
    """What a node is doing; the values are on the wire."""

    STARTING = 0
    WAITING_FOR_PEERS = 1
    AGREEING_STATISTICS = 2
    TRAINING = 3
    EXCHANGING = 4
    REPORTING = 5
    DONE = 6
    STOPPED = 7

    @property
    def label(self) -> str:
        """The state as `p2pfl status` shows it: "waiting for peers"."""
        return self.name.lower().replace("_", " ")


@dataclass(frozen=True)
class StatusLine:
    """One member's checked line."""

    origin: int  # member index in the roster
    round: int  # rounds done
    state: State
    time_ms: int  # the origin's own clock when it signed

    def newer_than(self, other: StatusLine | None) -> bool:
        """True if this line says more than `other` (later round, then later state, then later time)."""
        if other is None:
            return True
        return (self.round, self.state, self.time_ms) > (other.round, other.state, other.time_ms)


def pack(key: Ed25519PrivateKey, consortium_id: bytes, line: StatusLine) -> bytes:
    """The signed bytes of `line`, which must be this key's member's own."""
    if len(consortium_id) != DIGEST_SIZE:
        raise ValueError(f"a consortium id is {DIGEST_SIZE} bytes, not {len(consortium_id)}")
    if not 0 <= line.round <= MAX_ROUND or not 0 <= line.origin <= 0xFFFF:
        raise ValueError(f"round {line.round} or member index {line.origin} out of range")
    body = BODY.pack(MAGIC, VERSION, consortium_id, line.origin, line.round, int(line.state), line.time_ms)
    return body + sign(key, CONTEXT + body)


def parse(data: bytes, consortium_id: bytes, members: list[str], rounds: int) -> StatusLine:
    """The line of a member of this consortium, signed by the member at its origin index.

    Checked in order: size, magic and version, origin index, signature, consortium, round (at
    most `rounds`), state. InvalidMessage (BadSignature, ProtocolViolation) says what is wrong."""
    data = bytes(data)
    if len(data) != LINE_SIZE:
        raise InvalidMessage(f"status line is {len(data)} bytes (expected {LINE_SIZE})")
    magic, version, cid, origin, round, state, time_ms = BODY.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise InvalidMessage(f"not a p2pfl status line (magic {magic!r}, version {version})")
    if origin >= len(members):
        raise InvalidMessage(f"status line origin {origin} is not a member index (0 to {len(members) - 1})")
    try:
        public = public_key_from_peer_id(members[origin])
    except InvalidPeerId as exc:
        raise InvalidMessage(str(exc)) from None
    if not verify(public, CONTEXT + data[:BODY.size], data[BODY.size:]):
        raise BadSignature(f"status line signature does not verify against member {origin} "
                           f"({members[origin]})")
    if cid != consortium_id:
        raise ProtocolViolation(f"status line of consortium {cid.hex()[:SHORT_ID]}, not this "
                                f"node's {consortium_id.hex()[:SHORT_ID]}")
    if round > rounds:
        raise ProtocolViolation(f"status line of member {origin} says round {round} of {rounds}")
    try:
        said = State(state)
    except ValueError:
        raise ProtocolViolation(f"status line of member {origin} has unknown state {state}") from None
    return StatusLine(origin, round, said, time_ms)


def consortium_of(data: bytes) -> bytes:
    """The consortium ID a line claims (unchecked: `parse` checks it), b"" if it is too short."""
    return bytes(data[5:5 + DIGEST_SIZE]) if len(data) >= BODY.size else b""


def pack_bundle(lines: list[bytes]) -> bytes:
    """The lines as one bundle: their count, then each of them."""
    if len(lines) > 0xFFFF:
        raise ValueError(f"a bundle holds at most {0xFFFF} lines, not {len(lines)}")
    return COUNT.pack(len(lines)) + b"".join(lines)


def bundle_count(head: bytes, max_count: int) -> int:
    """The line count of a bundle from its first COUNT.size bytes (InvalidMessage above `max_count`)."""
    (count,) = COUNT.unpack(bytes(head))
    if count > max_count:
        raise InvalidMessage(f"status bundle claims {count} lines (at most {max_count})")
    return count
