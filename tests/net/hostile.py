"""Hostile messages for tests: what a lying member can send that no honest node would."""

from __future__ import annotations

from p2pfl.protocol.codec import ALIGN, MAGIC, PREFIX_SIZE, SIGNING_CONTEXT
from p2pfl.protocol.identity import Ed25519PrivateKey, sign


def header_bomb(key: Ed25519PrivateKey, depth: int = 60_000) -> bytes:
    """A message validly signed by `key` whose header is `depth` nested msgpack arrays (just
    under the 64 KiB header limit): unpacked naively, it costs tens of MB."""
    header = b"\x91" * depth + b"\x90"
    body = MAGIC + len(header).to_bytes(4, "big") + sign(key, SIGNING_CONTEXT + header) + header
    return body + bytes(-(PREFIX_SIZE + len(header)) % ALIGN)
