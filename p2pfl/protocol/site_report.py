"""The site report: one member's signed validation figures at the end of training, sent to
every roster member, so each can write the consortium's cross-site table without a coordinator.

A report holds figures only, no rows: the site's validation row count, its final model's
metrics on its own validation rows, and its per-round validation history (the metrics each
round's checkpoint was scored with), from which the members choose the best round
(p2pfl.protocol.selection). Pure: no I/O (p2pfl.net.reports carries it).

Wire format (big-endian), preceded on the stream by its length (u32, at most MAX_SIZE):

    magic b"P2SR" | version (u8) | consortium id (32 bytes) | member index (u16)
    | JSON length (u32) | the report as canonical JSON | Ed25519 signature (64 bytes)

The signature covers CONTEXT + every byte before it, by the key of the roster member at the
index, which must be the peer of the connection. The JSON is checked strictly (`check`).
"""

from __future__ import annotations

import json
import math
import struct

from p2pfl.protocol.consortium import SHORT_ID, canonical_json
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    InvalidPeerId,
    public_key_from_peer_id,
    sign,
    verify,
)
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation

MAGIC = b"P2SR"
VERSION = 1
CONTEXT = b"p2pfl site report v1\0"
HEAD = struct.Struct(">4sB32sHI")
LENGTH = struct.Struct(">I")
SIGNATURE_SIZE = 64
MAX_JSON = 1 << 20  # bytes: room for 10,000 rounds of a few metrics
MAX_SIZE = HEAD.size + MAX_JSON + SIGNATURE_SIZE
MAX_METRICS = 32  # figures per round or in the final table
MAX_NAME = 40

def pack(key: Ed25519PrivateKey, consortium_id: bytes, member: int, report: dict) -> bytes:
    """The signed report of member `member` (checked like a received one first)."""
    check(report)
    text = canonical_json(report).encode("ascii")
    if len(text) > MAX_JSON:
        raise ValueError(f"the site report takes {len(text)} bytes, more than {MAX_JSON}")
    body = HEAD.pack(MAGIC, VERSION, consortium_id, member, len(text)) + text
    return body + sign(key, CONTEXT + body)

def frame(message: bytes) -> bytes:
    return LENGTH.pack(len(message)) + message

def parse(data: bytes, sender: str, consortium_id: bytes, members: list[str]) -> tuple[int, dict]:
    """(member index, report) of a report `sender` signed; InvalidMessage says what is wrong."""
    data = bytes(data)
    if not HEAD.size + SIGNATURE_SIZE <= len(data) <= MAX_SIZE:
        raise InvalidMessage(f"site report is {len(data)} bytes (expected {HEAD.size + SIGNATURE_SIZE} "
                             f"to {MAX_SIZE})")
    magic, version, cid, member, size = HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise InvalidMessage(f"not a p2pfl site report (magic {magic!r}, version {version})")
    if HEAD.size + size + SIGNATURE_SIZE != len(data):
        raise InvalidMessage(f"site report says {size} bytes of JSON, the message holds "
                             f"{len(data) - HEAD.size - SIGNATURE_SIZE}")
    if member >= len(members) or members[member] != sender:
        raise InvalidMessage(f"site report claims member {member}, not the sender {sender}")
    try:
        public = public_key_from_peer_id(sender)
    except InvalidPeerId as exc:
        raise InvalidMessage(str(exc)) from None
    body = data[:-SIGNATURE_SIZE]
    if not verify(public, CONTEXT + body, data[-SIGNATURE_SIZE:]):
        raise BadSignature(f"site report signature does not verify against sender {sender}")
    if cid != consortium_id:
        raise ProtocolViolation(f"site report of consortium {cid.hex()[:SHORT_ID]}, not this node's "
                                f"{consortium_id.hex()[:SHORT_ID]}")
    try:
        report = json.loads(body[HEAD.size:].decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolViolation("site report is not JSON") from None
    check(report)
    return member, report

def check(report: object) -> None:
    """Raise ProtocolViolation unless `report` is {"rows": int, "rounds": int, "final": {name:
    number or null}, "history": {name: [number or null, one per round]}}."""
    if type(report) is not dict or set(report) != {"rows", "rounds", "final", "history"}:
        raise ProtocolViolation("site report must hold exactly rows, rounds, final and history")
    rows, rounds = report["rows"], report["rounds"]
    for name, n in (("rows", rows), ("rounds", rounds)):
        if type(n) is not int or not 0 <= n < 2**53:
            raise ProtocolViolation(f"site report {name} is not a count")
    _figures(report["final"], "final")
    history = report["history"]
    if type(history) is not dict or len(history) > MAX_METRICS:
        raise ProtocolViolation(f"site report history must map at most {MAX_METRICS} names to lists")
    for name, values in history.items():
        _name(name)
        if type(values) is not list or len(values) != rounds:
            raise ProtocolViolation(f"site report history {name!r} must hold one value per round ({rounds})")
        for v in values:
            _number(v, f"history {name!r}")

def _figures(table: object, where: str) -> None:
    if type(table) is not dict or len(table) > MAX_METRICS:
        raise ProtocolViolation(f"site report {where} must map at most {MAX_METRICS} names to numbers")
    for name, value in table.items():
        _name(name)
        _number(value, f"{where} {name!r}")

def _name(name: object) -> None:
    if type(name) is not str or not 0 < len(name) <= MAX_NAME or not name.replace("_", "").isalnum():
        raise ProtocolViolation(f"site report has a bad metric name {str(name)[:MAX_NAME]!r}")

def _number(value: object, where: str) -> None:
    if value is None:
        return
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ProtocolViolation(f"site report {where} is not a finite number or null")
