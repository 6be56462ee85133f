"""A node's side of agreeing on the preprocessing statistics (p2pfl.net.agreement): its own
signed statistics, the pulls it answers and makes, and the pooled result.

The daemon admits a pulling stream (roster member, per-peer cap) and hands it to `answer`; it
gives `agree` a way to open a stream to a peer. The pooled statistics are those of every
member's training rows, combined in member order, the same at every node bit for bit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.preprocess import Statistics, pooled, vector_size
from p2pfl.net import agreement, transfer
from p2pfl.net.eventlog import EventLog
from p2pfl.protocol import stats_message
from p2pfl.protocol.identity import Ed25519PrivateKey
from p2pfl.protocol.messages import ProtocolViolation

OpenStream = Callable[[str], Awaitable[object]]  # peer ID -> a new stream on STATS_PROTOCOL


class StatisticsExchange:
    """This node's statistics, signed and held, and every member's as they arrive."""

    def __init__(self, key: Ed25519PrivateKey, consortium_id: bytes, index: int, members: list[str],
                 names: dict[str, str], own: Statistics, log: EventLog, timeouts: transfer.Timeouts):
        self.consortium_id, self.members, self.names = consortium_id, members, names
        self.columns, self.own, self.log, self.timeouts = own.columns, own, log, timeouts
        self.held = agreement.Held(vector_size(own.columns))
        self.held.add(index, stats_message.pack(key, consortium_id, index, own.to_vector()))

    def check(self, raw: bytes) -> tuple[int, np.ndarray]:
        """A received message's (origin, values): signed by its origin member, of this
        consortium, and statistics that make sense (InvalidMessage otherwise)."""
        origin, values = stats_message.parse(raw, self.consortium_id, self.members, self.held.n_values)
        try:
            Statistics.from_vector(values, self.columns)
        except LearningSettingError as exc:
            raise ProtocolViolation(f"statistics of {self.names[self.members[origin]]}: {exc}") from None
        return origin, values

    async def agree(self, peers: list[str], open_stream: OpenStream, timeout: float) -> Statistics | None:
        """Pull from `peers` until every member's statistics are held; their pooled statistics,
        or None after `timeout` seconds (logged)."""
        async def fetch(peer: str) -> bytes:
            stream = await open_stream(peer)
            try:
                limit = stats_message.bundle_size(self.held.n_values, len(self.members))
                bundle = await agreement.read_bundle(stream, limit, self.timeouts)
                await stream.close()  # type: ignore[attr-defined]
                return bundle
            except BaseException:
                await transfer.reset(stream)
                raise

        if not await agreement.collect(self.held, self.members, peers, fetch, self.check, self.names,
                                       self.log, timeout):
            return None
        parts = [Statistics.from_vector(v, self.columns) for _, v in sorted(self.held.values().items())]
        return pooled(parts)

    async def answer(self, stream, peer: str) -> None:
        """Answer a member's pull with every signed statistics message held now."""
        try:
            await agreement.serve(stream, self.held, self.timeouts)
            await stream.close()
        except Exception as exc:  # noqa: BLE001 - the puller went away: nothing to keep
            self.log.warn_limited("statistics_pull_failed", peer, peer=self.names[peer],
                                  reason=str(exc) or type(exc).__name__)
            await transfer.reset(stream)

