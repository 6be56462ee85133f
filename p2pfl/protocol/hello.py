"""The start hello: before round 0 a node asks each in-neighbour which consortium it is of.

The dialer sends a HELLO, the listener answers with a REPLY; each carries the sender's
consortium ID, the full SHA-256 of each section it was derived from (p2pfl.protocol.consortium)
and the sections themselves (the plan and the roster), so that on a mismatch each side names the
keys that differ and both values, signed with the sender's node key. Pure: no I/O
(p2pfl.net.quorum carries it).

Wire format (big-endian), preceded on the stream by its length (u32, at most MAX_SIZE):

    magic b"P2HI" | version (u8) | role (u8: 0 hello, 1 reply) | consortium id (32 bytes)
    | section count (u8, at most 16) | per section, in strictly increasing name order:
      name length (u8) | name (ASCII [a-z_]{1,32}) | digest (32 bytes)
    | plan length (u32, at most MAX_PLAN) | the sections' values: canonical JSON of
      {name: value} (p2pfl.protocol.consortium.canonical_json), each hashing to its digest
    | Ed25519 signature (64 bytes)

The signature covers CONTEXT + the recipient's peer ID + NUL + every byte before it, so a hello
is good only for the node it was sent to and a reply cannot be passed off as a hello. The
sender is the peer ID of the authenticated connection; its key is the one in that peer ID.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from p2pfl.protocol.consortium import (
    DIGEST_SIZE,
    MAX_SECTION_NAME,
    MAX_SECTIONS,
    SECTION_NAME,
    Consortium,
    canonical_json,
    consortium_id,
    section_digest,
)
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    InvalidPeerId,
    public_key_from_peer_id,
    sign,
    verify,
)
from p2pfl.protocol.messages import BadSignature, InvalidMessage

MAGIC = b"P2HI"
VERSION = 2
CONTEXT = b"p2pfl hello v2\0"
SIGNATURE_SIZE = 64
HEAD = struct.Struct(">4sBB32sB")
LENGTH = struct.Struct(">I")  # the frame: message length before the message; also the plan's
MAX_PLAN = 256 * 1024  # bytes of the sections' JSON (a plan with long category lists, a roster)
MAX_SIZE = (HEAD.size + MAX_SECTIONS * (1 + MAX_SECTION_NAME + DIGEST_SIZE) + LENGTH.size + MAX_PLAN
            + SIGNATURE_SIZE)


@dataclass(frozen=True)
class Greeting:
    """What a hello says: the sender's consortium and the sections it was derived from."""

    consortium: Consortium
    plan: dict[str, object]  # section name -> value


class Role(enum.IntEnum):
    HELLO = 0  # sent by the dialer
    REPLY = 1  # the listener's answer


def pack(key: Ed25519PrivateKey, consortium: Consortium, plan: Mapping[str, object], role: Role,
         recipient: str) -> bytes:
    """The signed hello (or reply) of `consortium`, derived from the sections `plan`, for the
    node whose peer ID is `recipient`. ValueError if the plan is not the consortium's or too big."""
    names = sorted(consortium.sections)
    if sorted(plan) != names or any(section_digest(n, plan[n]) != consortium.sections[n] for n in names):
        raise ValueError("the plan given is not the one the consortium was derived from")
    text = canonical_json(dict(plan)).encode("ascii")
    if len(text) > MAX_PLAN:
        raise ValueError(f"the plan and roster take {len(text)} bytes as JSON, more than a hello "
                         f"carries ({MAX_PLAN})")
    body = HEAD.pack(MAGIC, VERSION, role, consortium.id, len(names))
    for name in names:
        raw = name.encode("ascii")
        body += bytes([len(raw)]) + raw + consortium.sections[name]
    body += LENGTH.pack(len(text)) + text
    return body + sign(key, _signed(recipient, body))


def frame(message: bytes) -> bytes:
    """`message` preceded by its length, as it goes on the stream."""
    return LENGTH.pack(len(message)) + message


def parse(data: bytes, sender: str, recipient: str, role: Role) -> Greeting:
    """The sender's consortium and plan from a hello of `role` that `sender` signed for `recipient`.

    InvalidMessage says what is wrong (BadSignature if the signature does not verify)."""
    data = bytes(data)
    if not HEAD.size + SIGNATURE_SIZE <= len(data) <= MAX_SIZE:
        raise InvalidMessage(f"hello is {len(data)} bytes (expected "
                             f"{HEAD.size + SIGNATURE_SIZE} to {MAX_SIZE})")
    magic, version, got_role, cid, count = HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise InvalidMessage(f"not a p2pfl hello (magic {magic!r}, version {version})")
    if got_role != role:
        raise InvalidMessage(f"hello has role {got_role}, expected {int(role)} ({role.name.lower()})")
    if count > MAX_SECTIONS:
        raise InvalidMessage(f"hello lists {count} sections (at most {MAX_SECTIONS})")
    body_end = len(data) - SIGNATURE_SIZE
    at, sections, last = HEAD.size, {}, ""
    for _ in range(count):
        if at >= body_end:
            raise InvalidMessage("hello ends inside its section list")
        size = data[at]
        name_bytes = data[at + 1 : at + 1 + size]
        digest = data[at + 1 + size : at + 1 + size + DIGEST_SIZE]
        at += 1 + size + DIGEST_SIZE
        if at > body_end:
            raise InvalidMessage("hello ends inside its section list")
        name = name_bytes.decode("ascii", "replace")
        if not SECTION_NAME.fullmatch(name):
            raise InvalidMessage(f"hello section name {name_bytes!r} is not 1 to {MAX_SECTION_NAME} "
                                 "characters of a-z and _")
        if name <= last:
            raise InvalidMessage(f"hello section {name!r} is out of order or repeated")
        sections[name], last = digest, name
    if at + LENGTH.size > body_end:
        raise InvalidMessage("hello ends before its plan")
    (plan_size,) = LENGTH.unpack_from(data, at)
    at += LENGTH.size
    if plan_size > MAX_PLAN or at + plan_size != body_end:
        raise InvalidMessage(f"hello plan of {plan_size} bytes does not fit the message "
                             f"({body_end - at} bytes left, at most {MAX_PLAN})")
    try:
        public = public_key_from_peer_id(sender)
    except InvalidPeerId as exc:
        raise InvalidMessage(str(exc)) from None
    if not verify(public, _signed(recipient, data[:body_end]), data[body_end:]):
        raise BadSignature(f"hello signature does not verify against sender {sender}")
    if consortium_id(sections) != cid:
        raise InvalidMessage("hello consortium id is not the digest of its sections")
    return Greeting(Consortium(cid, sections), _plan(data[at:body_end], sections))


def _plan(text: bytes, sections: dict[str, bytes]) -> dict[str, object]:
    """The sections' values of a signed hello, each checked against its digest."""
    try:
        plan = json.loads(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidMessage("hello plan is not canonical JSON") from None
    if type(plan) is not dict or sorted(plan) != sorted(sections):
        raise InvalidMessage("hello plan does not hold exactly the sections listed")
    for name, value in plan.items():
        try:
            same = section_digest(name, value) == sections[name]
        except (ValueError, RecursionError):
            same = False
        if not same:
            raise InvalidMessage(f"hello plan section {name!r} does not match its digest")
    return plan


def _signed(recipient: str, body: bytes) -> bytes:
    return CONTEXT + recipient.encode("ascii", "replace") + b"\0" + body
