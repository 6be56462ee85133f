"""Agreeing on the standardisation statistics before round 0: signed flooding over the topology.

Each member signs its own aggregates (p2pfl.protocol.stats_message) and holds them; a node pulls
from each in-neighbour, every RETRY seconds, the bundle of every message that neighbour holds,
checks each message against the signature of its originator (a relay cannot alter another
member's contribution) and keeps the new ones. Once it holds all N members' messages it stops
pulling but keeps serving its bundle, so the flood reaches nodes further on; the caller then
combines the values in member order, and every node gets bit-identical statistics. A member
that never comes is named in a `statistics_timeout` line after the timeout.

A member that signs two different vectors (equivocation) would break the agreement; a node that
sees both keeps the first and logs `statistics_conflict` naming the member.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import numpy as np
import trio

from p2pfl.net import transfer
from p2pfl.net.eventlog import EventLog
from p2pfl.protocol import stats_message
from p2pfl.protocol.messages import InvalidMessage

RETRY = 0.2  # seconds between pulls from one in-neighbour while messages are missing
LOG_EVERY = 5.0  # seconds between `waiting_for_statistics` lines
LENGTH = struct.Struct(">I")  # the frame: bundle length before the bundle


class Held:
    """The statistics messages this node holds, by origin member index, each already checked
    (or this node's own); all carry `n_values` values."""

    def __init__(self, n_values: int):
        stats_message.message_size(n_values)  # the bound
        self.n_values = n_values
        self._raw: dict[int, bytes] = {}

    def add(self, origin: int, raw: bytes) -> bool:
        """Hold `raw` as member `origin`'s message; False (and nothing changes) if one is held."""
        if origin in self._raw:
            return False
        self._raw[origin] = bytes(raw)
        return True

    def get(self, origin: int) -> bytes | None:
        """The message held from member `origin`, if any."""
        return self._raw.get(origin)

    def bundle(self) -> bytes:
        """Every message held, in origin order, as one bundle (what a pull returns)."""
        return stats_message.pack_bundle([self._raw[o] for o in sorted(self._raw)])

    def complete(self, n: int) -> bool:
        """True when a message of each of the members 0 .. n-1 is held."""
        return all(o in self._raw for o in range(n))

    def values(self) -> dict[int, np.ndarray]:
        """Each held member's values, by origin, in origin order."""
        return {o: stats_message.values_of(self._raw[o]) for o in sorted(self._raw)}


async def serve(stream, held: Held, timeouts: transfer.Timeouts) -> None:
    """Answer one pull: the framed bundle of every message held now."""
    bundle = held.bundle()
    await transfer.write_all(stream, LENGTH.pack(len(bundle)) + bundle, timeouts)


async def read_bundle(stream, max_size: int, timeouts: transfer.Timeouts) -> bytes:
    """One framed bundle: its length (checked against `max_size` first), then its bytes."""
    head = await transfer.read_exactly(stream, LENGTH.size, timeouts)
    (size,) = LENGTH.unpack(head)
    if size > max_size:
        raise transfer.TransferError(f"statistics bundle of {size:,} bytes exceeds the limit "
                                     f"of {max_size:,}")
    return bytes(await transfer.read_exactly(stream, size, timeouts))


async def collect(held: Held, members: list[str], in_peers: list[str],
                  fetch: Callable[[str], Awaitable[bytes]],
                  check: Callable[[bytes], tuple[int, np.ndarray]],
                  names: dict[str, str], log: EventLog, timeout: float) -> bool:
    """Pull from `in_peers` until `held` has every member's message; False after `timeout`
    seconds (one `statistics_timeout` line). `fetch(peer)` returns the peer's bundle and
    raises if it is not reachable (tried again); `check(message)` is stats_message.parse bound
    to this consortium, raising InvalidMessage for a bad message (logged, rate limited per
    peer; the rest of the bundle is still used)."""
    need = len(members)
    done = trio.Event()

    def name(peer: str) -> str:
        return names.get(peer, peer)

    def missing() -> str:
        return ",".join(name(members[o]) for o in range(need) if held.get(o) is None) or "-"

    def take(peer: str, bundle: bytes) -> None:
        try:
            messages = stats_message.split_bundle(bundle, held.n_values, need)
        except InvalidMessage as exc:
            log.warn_limited("bad_statistics", peer, peer=name(peer), reason=str(exc))
            return
        for raw in messages:
            try:
                origin, _ = check(raw)
            except InvalidMessage as exc:
                log.warn_limited("bad_statistics", peer, peer=name(peer), reason=str(exc))
                continue
            old = held.get(origin)
            if old is None:
                held.add(origin, raw)
            elif old != raw:
                log.warn_limited("statistics_conflict", members[origin], member=name(members[origin]),
                                 peer=name(peer), effect="kept the first: this member signed two "
                                 "different vectors")
        if held.complete(need):
            done.set()

    async def pull(peer: str) -> None:
        while True:
            try:
                bundle = await fetch(peer)
            except Exception:  # noqa: BLE001 - not up yet: try again
                pass
            else:
                take(peer, bundle)
            await trio.sleep(RETRY)

    async def report() -> None:
        while True:
            log.info("waiting_for_statistics", have=sum(held.get(o) is not None for o in range(need)),
                     need=need, missing=missing())
            await trio.sleep(LOG_EVERY)

    if not held.complete(need):
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(report)
                for peer in in_peers:
                    nursery.start_soon(pull, peer)
                await done.wait()
                nursery.cancel_scope.cancel()
        if not held.complete(need):
            log.error("statistics_timeout", seconds=timeout, need=need, missing=missing(),
                      effect="stopping: not every member's statistics arrived")
            return False
    log.info("statistics_agreed", members=need)
    return True
