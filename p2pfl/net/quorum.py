"""The start quorum: before round 0, wait until enough in-neighbours are up and of this consortium.

A node started before its peers would otherwise train alone, one round per round_timeout. So a
node at round 0 says hello (p2pfl.protocol.hello) to each in-neighbour of round 0, retrying
every RETRY seconds, until `gossip.min_peers` of them answered with this node's consortium ID
(-1: all of them), logging whom it waits for every LOG_EVERY seconds. A peer of another
consortium is named with the differing sections and does not count. After
`gossip.start_timeout` seconds it gives up (the daemon exits with code 6). A node resuming from a
checkpoint does not wait: the catch-up rules (p2pfl.protocol.rounds) apply instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from p2pfl.errors import EXIT_NO_QUORUM
from p2pfl.net import transfer
from p2pfl.net.eventlog import EventLog
from p2pfl.net.host import HELLO_PROTOCOL
from p2pfl.protocol import hello

RETRY = 1.0  # seconds between hellos to a peer that is not there yet (or not of this consortium)
LOG_EVERY = 5.0  # seconds between `waiting_for_peers` lines
MAX_HELLOS = 2  # concurrent inbound hellos per peer


def needed(min_peers: int, in_peers: list[str]) -> int:
    """How many of `in_peers` must answer: all for -1, at most all of them otherwise."""
    return len(in_peers) if min_peers < 0 else min(min_peers, len(in_peers))


async def read_hello(stream, timeouts: transfer.Timeouts) -> bytes:
    """One framed hello: its length (checked against hello.MAX_SIZE first), then its bytes."""
    head = await transfer.read_exactly(stream, hello.LENGTH.size, timeouts)
    (size,) = hello.LENGTH.unpack(head)
    if size > hello.MAX_SIZE:
        raise transfer.TransferError(f"hello of {size} bytes exceeds the limit of {hello.MAX_SIZE}")
    return bytes(await transfer.read_exactly(stream, size, timeouts))


async def say_hello(host, pid, mine: bytes, timeouts: transfer.Timeouts) -> bytes:
    """Send the signed hello `mine` to the connected peer `pid` on a new hello stream and return
    its raw reply (parse it with hello.parse); the stream is reset if anything fails."""
    stream = None
    try:
        with trio.fail_after(timeouts.connect):
            stream = await host.new_stream(pid, [HELLO_PROTOCOL])
        await transfer.write_all(stream, hello.frame(mine), timeouts)
        raw = await read_hello(stream, timeouts)
        await stream.close()
        return raw
    except BaseException:
        if stream is not None:
            await transfer.reset(stream)
        raise


async def gather(peers: list[str], need: int, greet: Callable[[str], Awaitable[str | None]],
                 names: dict[str, str], log: EventLog, timeout: float) -> bool:
    """Greet each of `peers` until `need` of them answered as members of this consortium; False
    after `timeout` seconds (one `start_timeout` line). `greet(peer)` returns None for a peer
    of this consortium, else why not (logged, rate limited); it raises if the peer is not
    reachable."""
    ready: set[str] = set()
    enough = trio.Event()

    def waiting() -> dict[str, object]:
        missing = sorted(names[p] for p in peers if p not in ready)
        return dict(have=len(ready), need=need, waiting_for=",".join(missing) or "-")

    async def until_ready(peer: str) -> None:
        while True:
            try:
                reason = await greet(peer)
            except Exception:  # noqa: BLE001 - not up yet: try again
                reason = ""
            if reason is None:
                ready.add(peer)
                if len(ready) >= need:
                    enough.set()
                return
            if reason:
                log.warn_limited("consortium_mismatch", peer, peer=names[peer], reason=reason)
            await trio.sleep(RETRY)

    async def report() -> None:
        while True:
            log.info("waiting_for_peers", **waiting())
            await trio.sleep(LOG_EVERY)

    if len(ready) >= need:
        return True
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report)
            for peer in peers:
                nursery.start_soon(until_ready, peer)
            await enough.wait()
            nursery.cancel_scope.cancel()
        log.info("start_quorum", have=len(ready), need=need,
                 peers=",".join(sorted(names[p] for p in ready)))
        return True
    log.error("start_timeout", seconds=timeout, **waiting(), exit_code=EXIT_NO_QUORUM,
              effect="stopping: the start quorum (gossip.min_peers) was not reached")
    return False
