"""Gossiping status lines (p2pfl.protocol.status_line) on `/p2pfl/status/1.0.0`, so that every
node knows the round of every member, neighbours or not.

A node signs a new line of its own whenever its round or state changes, and keeps the newest
checked line of each member. Every line that is new here is pushed to this node's neighbours
(except the one it came from and its origin), as one bundle per neighbour at most every
PUSH_EVERY seconds: the lines of a round cross the consortium within a few pushes, at most
N lines per push. A push is a u16 count and that many fixed-size lines; the count is checked
against the roster before the lines are read, each line against its origin's signature, and a
member pushing more often than every MIN_GAP seconds is cut off unread.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from p2pfl.net import transfer
from p2pfl.net.eventlog import EventLog
from p2pfl.net.status import NodeStatus
from p2pfl.protocol import status_line
from p2pfl.protocol.identity import Ed25519PrivateKey
from p2pfl.protocol.messages import InvalidMessage
from p2pfl.protocol.status_line import State, StatusLine

PUSH_EVERY = 0.1  # seconds between two pushes to one neighbour
MIN_GAP = 0.05  # seconds a member must leave between two pushes it sends here


class StatusGossip:
    """This node's held status lines and its pushes to its neighbours."""

    def __init__(self, key: Ed25519PrivateKey, consortium_id: bytes, index: int, members: list[str],
                 names: dict[str, str], rounds: int, status: NodeStatus, log: EventLog,
                 timeouts: transfer.Timeouts):
        self.key, self.consortium_id, self.index = key, consortium_id, index
        self.members, self.names, self.rounds = members, names, rounds
        self.status, self.log, self.timeouts = status, log, timeouts
        self.lines: dict[int, tuple[StatusLine, bytes]] = {}  # newest checked line per member
        self.dirty: dict[str, set[int]] = {}  # per neighbour: members whose new line it lacks
        self.wake: dict[str, trio.Event] = {}  # per neighbour with a pusher: set when it lacks lines
        self.last_push_from: dict[str, float] = {}
        self.nursery: trio.Nursery | None = None
        self.open_stream: Callable[[str], Awaitable[object]] | None = None

    def start(self, nursery: trio.Nursery, open_stream: Callable[[str], Awaitable[object]]) -> None:
        """Push from now on, in `nursery`, over streams that `open_stream(peer)` opens."""
        self.nursery, self.open_stream = nursery, open_stream

    def say(self, round: int, state: State, neighbours: list[str]) -> None:
        """Sign this node's line (`round` rounds done, `state`) and push it to `neighbours`."""
        line = StatusLine(self.index, round, state, int(time.time() * 1000))
        self.lines[self.index] = (line, status_line.pack(self.key, self.consortium_id, line))
        self.spread([self.index], neighbours)

    def spread(self, origins: list[int], neighbours: list[str], came_from: str | None = None) -> None:
        """Push the newest lines of `origins` to `neighbours`, except to `came_from` and to each
        line's origin (before `start`, the lines are only held)."""
        if self.nursery is None:
            return
        for peer in neighbours:
            fresh = {o for o in origins if self.members[o] != peer}
            if peer in (came_from, self.members[self.index]) or not fresh:
                continue
            self.dirty.setdefault(peer, set()).update(fresh)
            if peer not in self.wake:
                self.wake[peer] = trio.Event()
                self.nursery.start_soon(self._push_to, peer)
            self.wake[peer].set()

    async def _push_to(self, peer: str) -> None:
        """Push to `peer` whatever it lacks, whenever it lacks something (one task per
        neighbour, until cancelled). A failed push keeps the lines for the next one."""
        while True:
            await self.wake[peer].wait()
            self.wake[peer] = trio.Event()
            origins = self.dirty.pop(peer, set())
            if not origins:
                continue
            bundle = status_line.pack_bundle([self.lines[o][1] for o in sorted(origins)])
            stream = None
            try:
                stream = await self.open_stream(peer)
                await transfer.write_all(stream, bundle, self.timeouts)
                await stream.close()
            except Exception:  # noqa: BLE001 - a neighbour down: it gets them with the next push
                self.dirty.setdefault(peer, set()).update(origins)
                if stream is not None:
                    with trio.move_on_after(1):
                        await transfer.quietly(stream.reset())
            await trio.sleep(PUSH_EVERY)

    async def answer(self, stream, peer: str) -> list[int]:
        """Read one push from member `peer`; the members whose line was new here."""
        now = time.monotonic()
        if now - self.last_push_from.get(peer, -MIN_GAP) < MIN_GAP:
            self.log.warn_limited("status_refused", peer, peer=self.names[peer],
                                  reason=f"pushes less than {MIN_GAP} s apart")
            await transfer.quietly(stream.reset())
            return []
        self.last_push_from[peer] = now
        head = await transfer.read_exactly(stream, status_line.COUNT.size, self.timeouts)
        try:
            count = status_line.bundle_count(head, len(self.members))
        except InvalidMessage as exc:
            self.log.warn_limited("status_rejected", peer, peer=self.names[peer], reason=str(exc))
            await transfer.quietly(stream.reset())
            return []
        data = bytes(await transfer.read_exactly(stream, count * status_line.LINE_SIZE, self.timeouts))
        new = []
        for i in range(count):
            raw = data[i * status_line.LINE_SIZE : (i + 1) * status_line.LINE_SIZE]
            try:
                line = status_line.parse(raw, self.consortium_id, self.members, self.rounds)
            except InvalidMessage as exc:
                self.log.warn_limited("status_rejected", peer, peer=self.names[peer], reason=str(exc))
                continue
            if line.origin != self.index and line.newer_than(self._held(line.origin)):
                self.lines[line.origin] = (line, raw)
                self.status.heard(self.names[self.members[line.origin]], line.round, "status line",
                                  line.state)
                new.append(line.origin)
        return new

    def _held(self, origin: int) -> StatusLine | None:
        held = self.lines.get(origin)
        return held[0] if held else None
