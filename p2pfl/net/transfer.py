"""One model update per libp2p stream: a fixed header, the payload in chunks, then an ack.

Header (21 bytes, big-endian): magic b"P2FL", format version (1 byte), round (u64), payload size
(u64). The receiver checks the sender's authenticated peer ID against the roster before reading
anything, bounds the declared size before reading the payload, reads with a timeout on every
chunk, and checks the size at the end (an EOF from a crashed sender looks like a normal close).
A timed-out or failed stream is reset. No hash here: Noise authenticates every record, and the
update itself carries a signed digest of its payload that the codec verifies (version 2 hashed
the whole payload twice more, a third of a 100 MB transfer's time).

The ack comes after the receiver has checked the update (signature, consortium, round, model),
so a rejected update never looks delivered: one code byte (`Ack`), one length byte, and up to
255 bytes of UTF-8 reason, which the sender logs ("rejected: fingerprint ...").
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

MAGIC = b"P2FL"
VERSION = 3  # 2: the ack carries a code and a reason, after the checks; 3: no payload hash
HEADER = struct.Struct(">4sBQQ")
CHUNK = 1 << 20  # 1 MiB: the unit of writes, and of read progress under one timeout
WRITE = 4 << 20  # bytes per write call
MAX_REASON = 255  # bytes of reason text in an ack


class Ack(enum.IntEnum):
    """What the receiver did with an update."""

    ACCEPTED = 0  # checked and used (or held as catch-up evidence)
    REFUSED = 1  # declined from the transfer header, before the payload was read
    REJECTED = 2  # read and checked: invalid for this node (the reason says why)
    DROPPED = 3  # valid but not needed: stale round or a duplicate


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
    return HEADER.pack(MAGIC, VERSION, round, memoryview(payload).nbytes)


async def write_all(stream, data: bytes | memoryview, timeouts: Timeouts) -> None:
    """Write `data` in WRITE-byte pieces, each under the chunk timeout (scaled to its size).
    The pieces are views (Yamux copies each frame once), so `data` must not change meanwhile."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE):
        with trio.fail_after(timeouts.chunk * WRITE / CHUNK):
            await stream.write(view[start : start + WRITE])


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


class Refused(TransferError):
    """The receiver read the update, or its header, and declined it; retrying will not help."""

    def __init__(self, code: Ack, reason: str):
        super().__init__(f"{code.name.lower()}: {reason}")
        self.code = code
        self.reason = reason


def pack_ack(code: Ack, reason: str = "") -> bytes:
    """The ack bytes: code, length, reason (cut to MAX_REASON bytes of UTF-8)."""
    text = reason.encode("utf-8")[:MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
    return bytes([code, len(text)]) + text


async def reply(stream, code: Ack, reason: str, timeouts: Timeouts) -> None:
    """Send the receiver's verdict on the update it read."""
    with trio.fail_after(timeouts.chunk):
        await stream.write(pack_ack(code, reason))


async def send(stream, round: int, payload: bytes | memoryview, timeouts: Timeouts) -> Ack:
    """Send one update on an open stream and wait for the receiver's ack: ACCEPTED or
    DROPPED is returned; REFUSED or REJECTED raises `Refused` with the receiver's reason."""
    await write_all(stream, pack_header(round, payload), timeouts)
    await write_all(stream, payload, timeouts)
    # the receiver checks the whole update before it answers: wait up to the ack timeout
    head = await read_exactly(stream, 2, dataclasses.replace(timeouts, chunk=timeouts.ack))
    try:
        code = Ack(head[0])
    except ValueError:
        raise TransferError(f"unknown ack code {head[0]}") from None
    reason = bytes(await read_exactly(stream, head[1], timeouts)).decode("utf-8", "replace")
    if code in (Ack.REFUSED, Ack.REJECTED):
        raise Refused(code, reason or "no reason given")
    return code


async def receive(
    stream,
    max_size: int,
    timeouts: Timeouts,
    refuse: Callable[[int], str | None] | None = None,
) -> tuple[int, bytearray]:
    """Read one update: (round, payload); the caller checks it, then `reply`s. `refuse(round)`
    may decline it before the payload (the REFUSED ack is sent here)."""
    raw = await read_exactly(stream, HEADER.size, timeouts)
    magic, version, round, size = HEADER.unpack(raw)
    if magic != MAGIC or version != VERSION:
        raise TransferError(f"not a p2pfl transfer (magic {magic!r}, version {version})")
    if size > max_size:
        raise TransferError(f"declared size {size:,} bytes exceeds the limit of {max_size:,}")
    reason = refuse(round) if refuse else None
    if reason:
        await reply(stream, Ack.REFUSED, reason, timeouts)
        raise TransferError(f"round {round} refused before reading: {reason}")
    return round, await read_exactly(stream, size, timeouts)


RESET_GRACE = 1.0  # seconds a cleanup reset may take


async def quietly(awaitable) -> None:
    """Await a best-effort cleanup (closing or resetting a stream that may be gone already)."""
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - the stream is broken or closed: nothing to clean up
        pass


async def reset(stream) -> None:
    """Reset `stream` as a best-effort cleanup, giving up after RESET_GRACE seconds."""
    with trio.move_on_after(RESET_GRACE):
        await quietly(stream.reset())
