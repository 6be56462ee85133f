"""Joining mid-run (`/p2pfl/model/1.0.0`): a member admitted by a roster version fetches the
current model from a neighbour, as a signed update like any other, and trains from there.

A request carries nothing; the answer is a u32 length and the serving node's model at the
start of its current round (a dense update signed by it, of the consortium of that round), then
a u32 length and the preprocessing statistics as JSON (empty for a shared dataset). The joiner
checks sizes first, then everything an update goes through (signature, sender, consortium,
fingerprint, shapes, dtypes, finite values: the daemon's `decode` and `check_against`).
"""

from __future__ import annotations

import struct

from p2pfl.net import transfer

LENGTH = struct.Struct(">I")
MAX_STATISTICS = 8 << 20  # bytes of statistics JSON


async def serve(stream, update: bytes, statistics: bytes, timeouts: transfer.Timeouts) -> None:
    """Answer one request with `update` and `statistics`."""
    await transfer.write_all(stream, LENGTH.pack(len(update)) + bytes(update)
                             + LENGTH.pack(len(statistics)) + statistics, timeouts)
    await stream.close()


async def fetch(stream, max_update: int, timeouts: transfer.Timeouts) -> tuple[bytes, bytes]:
    """(update bytes, statistics JSON bytes) from a neighbour's answer, sizes checked first."""
    parts = []
    for limit in (max_update, MAX_STATISTICS):
        (size,) = LENGTH.unpack(bytes(await transfer.read_exactly(stream, LENGTH.size, timeouts)))
        if size > limit:
            raise transfer.TransferError(f"model answer part of {size:,} bytes exceeds {limit:,}")
        parts.append(bytes(await transfer.read_exactly(stream, size, timeouts)))
    await stream.close()
    return parts[0], parts[1]
