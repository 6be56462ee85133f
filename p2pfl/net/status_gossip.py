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
        self.key, self.names, self.rounds = key, names, rounds
        self.status, self.log, self.timeouts = status, log, timeouts
        self.eras: dict[bytes, list[str]] = {}  # consortium ID -> its members, in index order
        self.set_era(consortium_id, index, members)
        self.lines: dict[str, tuple[StatusLine, bytes]] = {}  # newest checked line per member
        self.dirty: dict[str, set[str]] = {}  # per neighbour: members whose new line it lacks
        self.wake: dict[str, trio.Event] = {}  # per neighbour with a pusher: set when it lacks lines
        self.last_push_from: dict[str, float] = {}
        self.nursery: trio.Nursery | None = None
        self.open_stream: Callable[[str], Awaitable[object]] | None = None

    def set_era(self, consortium_id: bytes, index: int, members: list[str]) -> None:
        """Sign with this consortium ID and member index from now on; lines of every era set so
        far are still read (members whose neighbours have not switched yet)."""
        self.consortium_id, self.index, self.members = consortium_id, index, list(members)
        self.eras[consortium_id] = list(members)

    def know(self, consortium_id: bytes, members: list[str]) -> None:
        """Read lines of this era too (one that starts later)."""
        self.eras.setdefault(consortium_id, list(members))

    def start(self, nursery: trio.Nursery, open_stream: Callable[[str], Awaitable[object]]) -> None:
        """Push from now on, in `nursery`, over streams that `open_stream(peer)` opens."""
        self.nursery, self.open_stream = nursery, open_stream

    def say(self, round: int, state: State, neighbours: list[str]) -> None:
        """Sign this node's line (`round` rounds done, `state`) and push it to `neighbours`."""
        me = self.members[self.index]
        line = StatusLine(self.index, round, state, int(time.time() * 1000))
        self.lines[me] = (line, status_line.pack(self.key, self.consortium_id, line))
        self.spread([me], neighbours)

    def spread(self, origins: list[str], neighbours: list[str], came_from: str | None = None) -> None:
        """Push the newest lines of `origins` (peer IDs) to `neighbours`, except to `came_from`
        and to each line's origin (before `start`, the lines are only held)."""
        if self.nursery is None:
            return
        for peer in neighbours:
            fresh = {o for o in origins if o != peer}
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
                    await transfer.reset(stream)
            await trio.sleep(PUSH_EVERY)

    async def answer(self, stream, peer: str) -> list[str]:
        """Read one push from member `peer`; the members (peer IDs) whose line was new here."""
        now = time.monotonic()
        if now - self.last_push_from.get(peer, -MIN_GAP) < MIN_GAP:
            self.log.warn_limited("status_refused", peer, peer=self.names[peer],
                                  reason=f"pushes less than {MIN_GAP} s apart")
            await transfer.reset(stream)
            return []
        self.last_push_from[peer] = now
        head = await transfer.read_exactly(stream, status_line.COUNT.size, self.timeouts)
        try:
            count = status_line.bundle_count(head, max(len(m) for m in self.eras.values()))
        except InvalidMessage as exc:
            self.log.warn_limited("status_rejected", peer, peer=self.names[peer], reason=str(exc))
            await transfer.reset(stream)
            return []
        data = bytes(await transfer.read_exactly(stream, count * status_line.LINE_SIZE, self.timeouts))
        new = []
        for i in range(count):
            raw = data[i * status_line.LINE_SIZE : (i + 1) * status_line.LINE_SIZE]
            cid = status_line.consortium_of(raw)
            try:
                members = self.eras.get(cid)
                if members is None:
                    raise InvalidMessage(f"status line of an unknown consortium {cid.hex()[:16]}")
                line = status_line.parse(raw, cid, members, self.rounds)
            except InvalidMessage as exc:
                self.log.warn_limited("status_rejected", peer, peer=self.names[peer], reason=str(exc))
                continue
            origin = members[line.origin]
            if origin != self.members[self.index] and line.newer_than(self._held(origin)):
                self.lines[origin] = (line, raw)
                self.status.heard(self.names.get(origin, origin), line.round, "status line", line.state)
                new.append(origin)
        return new

    def is_done(self, member: str) -> bool:
        """Whether `member` said it has finished every round."""
        held = self._held(member)
        return held is not None and held.state in (State.DONE, State.REPORTING)

    def _held(self, origin: str) -> StatusLine | None:
        held = self.lines.get(origin)
        return held[0] if held else None
