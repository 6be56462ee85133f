"""Passing roster versions on (`/p2pfl/roster/1.0.0`): a node that accepts a version offers it
to every member of the old and the new roster; each checks it itself (p2pfl.net.membership) and
answers in one short line.

A push is a u32 length (at most roster_chain.MAX_TEXT, checked before reading) and the version's
text; the answer is a u8 (0: held now, 1: refused), a u16 length and the reason (at most
MAX_REASON bytes). A peer that is down is offered the version again every RETRY seconds, at
most for `give_up` seconds.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import trio

from p2pfl.net import transfer
from p2pfl.protocol.roster import InvalidRoster
from p2pfl.protocol.roster_chain import MAX_TEXT, RosterVersion, parse_version, version_to_toml

LENGTH = struct.Struct(">I")
ANSWER = struct.Struct(">BH")
MAX_REASON = 400
RETRY = 1.0
HELD, REFUSED = 0, 1

Offer = Callable[[RosterVersion, str], str | None]  # (version, peer) -> why refused, None: held


async def push(version: RosterVersion, peer: str, open_stream: Callable[[str], Awaitable[object]],
               timeouts: transfer.Timeouts, give_up: float) -> str | None:
    """Offer `version` to `peer` until it answers; its refusal (None: it holds the version),
    or "unreachable" after `give_up` seconds."""
    text = version_to_toml(version).encode()
    with trio.move_on_after(give_up):
        while True:
            stream = None
            try:
                stream = await open_stream(peer)
                await transfer.write_all(stream, LENGTH.pack(len(text)) + text, timeouts)
                code, size = ANSWER.unpack(bytes(await transfer.read_exactly(stream, ANSWER.size, timeouts)))
                if size > MAX_REASON:
                    raise transfer.TransferError(f"answer of {size} bytes")
                reason = bytes(await transfer.read_exactly(stream, size, timeouts)).decode("utf-8", "replace")
                await stream.close()
                return None if code == HELD else reason
            except Exception:  # noqa: BLE001 - down or starting: offer it again
                if stream is not None:
                    await transfer.reset(stream)
            await trio.sleep(RETRY)
    return "unreachable"


async def answer(stream, peer: str, offer: Offer, timeouts: transfer.Timeouts) -> None:
    """Read one offered version (size first), let `offer` decide, and say what it decided."""
    (size,) = LENGTH.unpack(bytes(await transfer.read_exactly(stream, LENGTH.size, timeouts)))
    if size > MAX_TEXT:
        raise transfer.TransferError(f"roster version of {size:,} bytes exceeds the limit of {MAX_TEXT:,}")
    raw = bytes(await transfer.read_exactly(stream, size, timeouts))
    try:
        reason = offer(parse_version(raw.decode("utf-8"), "offered roster"), peer)
    except (InvalidRoster, UnicodeDecodeError) as exc:
        reason = str(exc)
    said = (reason or "").encode()[:MAX_REASON]
    await transfer.write_all(stream, ANSWER.pack(REFUSED if reason else HELD, len(said)) + said, timeouts)
    await stream.close()
