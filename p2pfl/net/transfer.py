"""One model update per libp2p stream: a fixed header, the payload in chunks, a one-byte ack.

Header (53 bytes, big-endian): magic b"P2FL", format version (1 byte), round (u64), payload size
(u64), SHA-256 of the payload (32 bytes). The receiver checks the sender's authenticated peer
ID against the roster before reading anything, bounds the declared size before reading the
payload, reads with a timeout on every chunk, and verifies size and hash at the end (an EOF
from a crashed sender looks like a normal close). A timed-out or failed stream is reset.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

MAGIC = b"P2FL"
VERSION = 1
HEADER = struct.Struct(">4sBQQ32s")
CHUNK = 1 << 20  # 1 MiB: the unit of writes, and of read progress under one timeout
WRITE = 4 << 20  # bytes per write call
ACK_OK, ACK_REFUSED = b"\x00", b"\x01"


class TransferError(Exception):
    """A transfer that failed; the text says why (for one log line)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each network wait."""

    connect: float = 10.0
    chunk: float = 30.0  # one read or write of up to CHUNK bytes, or the header
    ack: float = 60.0


def pack_header(round: int, payload: bytes | memoryview) -> bytes:
    """The header announcing `payload` for `round`."""
    return HEADER.pack(MAGIC, VERSION, round, len(payload), hashlib.sha256(payload).digest())


async def write_all(stream, data: bytes | memoryview, timeouts: Timeouts) -> None:
    """Write `data` in WRITE-byte pieces, each under the chunk timeout (scaled to its size)."""
    view = memoryview(data)
    for start in range(0, len(view), WRITE):
        with trio.fail_after(timeouts.chunk * WRITE / CHUNK):
            await stream.write(bytes(view[start : start + WRITE]))


async def read_exactly(stream, n: int, timeouts: Timeouts) -> bytearray:
    """Read exactly n bytes, each CHUNK of progress under the chunk timeout; EOF before n is an
    error. (One timer per CHUNK, not per read: Yamux hands over a few KiB per read.)"""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        target = min(n, got + CHUNK)
        with trio.fail_after(timeouts.chunk):
            while got < target:
                try:
                    chunk = await stream.read(n - got)
                except Exception as exc:  # py-libp2p raises StreamEOF / StreamReset / StreamError
                    raise TransferError(
                        f"stream ended after {got} of {n} bytes ({type(exc).__name__})") from None
                if not chunk:
                    raise TransferError(f"stream ended after {got} of {n} bytes")
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
    return buf


async def send(stream, round: int, payload: bytes | memoryview, timeouts: Timeouts) -> None:
    """Send one update on an open stream and wait for the receiver's ack."""
    header = await trio.to_thread.run_sync(pack_header, round, payload)
    await write_all(stream, header, timeouts)
    await write_all(stream, payload, timeouts)
    with trio.fail_after(timeouts.ack):
        ack = await stream.read(1)
    if ack != ACK_OK:
        raise TransferError("the receiver refused the update")


async def receive(
    stream,
    max_size: int,
    timeouts: Timeouts,
    refuse: Callable[[int], str | None] | None = None,
) -> tuple[int, bytearray]:
    """Read one update: (round, payload). `refuse(round)` may decline it before the payload."""
    raw = await read_exactly(stream, HEADER.size, timeouts)
    magic, version, round, size, digest = HEADER.unpack(raw)
    if magic != MAGIC or version != VERSION:
        raise TransferError(f"not a p2pfl transfer (magic {magic!r}, version {version})")
    if size > max_size:
        raise TransferError(f"declared size {size:,} bytes exceeds the limit of {max_size:,}")
    reason = refuse(round) if refuse else None
    if reason:
        await stream.write(ACK_REFUSED)
        raise TransferError(f"round {round} refused before reading: {reason}")
    payload = await read_exactly(stream, size, timeouts)
    actual = await trio.to_thread.run_sync(lambda: hashlib.sha256(payload).digest())
    if actual != digest:
        raise TransferError("payload SHA-256 does not match the header")
    with trio.fail_after(timeouts.chunk):
        await stream.write(ACK_OK)
    return round, payload
