"""The end of training: each node sends its signed site report (p2pfl.protocol.site_report) to
every roster member and collects theirs, waiting at most `gossip.report_timeout`; a member
whose report did not come is named as missing, not waited for forever.

Reports that arrive before this node has finished are kept (one per member, the first); the
stream handler runs for the node's whole life.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence

import numpy as np
import trio

from p2pfl.evaluation.metrics import clinical_metrics
from p2pfl.net import transfer
from p2pfl.net.eventlog import EventLog
from p2pfl.protocol import site_report
from p2pfl.protocol.identity import Ed25519PrivateKey
from p2pfl.protocol.selection import Choice, best_round

REPORT_FILE = "consortium_report.json"
HISTORY = ("accuracy", "balanced_accuracy", "auroc")  # per-round figures a report carries
RETRY = 0.5  # seconds between tries to a member that is not reachable yet
ACK = b"\x01"
OpenStream = Callable[[str], Awaitable[object]]  # peer ID -> a new stream on REPORT_PROTOCOL


class ReportExchange:
    """This node's report and the members' reports, by member index."""

    def __init__(self, key: Ed25519PrivateKey, consortium_id: bytes, index: int, members: list[str],
                 names: dict[str, str], log: EventLog, timeouts: transfer.Timeouts):
        self.key, self.consortium_id, self.index = key, consortium_id, index
        self.members, self.names, self.log, self.timeouts = members, names, log, timeouts
        self.reports: dict[int, dict] = {}
        self._changed = trio.Event()

    def complete(self) -> bool:
        return len(self.reports) == len(self.members)

    async def answer(self, stream, peer: str) -> None:
        """Keep a member's report (checked: size first, then signature, consortium, content)."""
        try:
            head = await transfer.read_exactly(stream, site_report.LENGTH.size, self.timeouts)
            (size,) = site_report.LENGTH.unpack(head)
            if size > site_report.MAX_SIZE:
                raise transfer.TransferError(f"site report of {size:,} bytes exceeds the limit of "
                                             f"{site_report.MAX_SIZE:,}")
            raw = await transfer.read_exactly(stream, size, self.timeouts)
            member, report = site_report.parse(raw, peer, self.consortium_id, self.members)
            await transfer.write_all(stream, ACK, self.timeouts)
            await stream.close()
        except Exception as exc:  # noqa: BLE001 - a bad report: one line, the rest goes on
            self.log.warn_limited("site_report_rejected", peer, peer=self.names[peer],
                                  reason=str(exc) or type(exc).__name__)
            await transfer.reset(stream)
            return
        if member not in self.reports:
            self.reports[member] = report
            self._changed.set()

    async def exchange(self, own: dict, open_stream: OpenStream, timeout: float) -> None:
        """Send `own` to every other member (each acks it) and wait for theirs, `timeout`
        seconds at most."""
        self.reports[self.index] = own
        message = site_report.frame(site_report.pack(self.key, self.consortium_id, self.index, own))
        others = [p for i, p in enumerate(self.members) if i != self.index]
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:  # done when all sent and all received
                for peer in others:
                    nursery.start_soon(self._send, peer, message, open_stream)
                while not self.complete():
                    self._changed = trio.Event()
                    await self._changed.wait()
        missing = [self.names[p] for i, p in enumerate(self.members) if i not in self.reports]
        if missing:
            self.log.warn("site_reports_missing", missing=",".join(missing), seconds=timeout)

    async def _send(self, peer: str, message: bytes, open_stream: OpenStream) -> None:
        """Deliver `message` to `peer` (it acks), trying again until the caller's deadline."""
        while True:
            stream = None
            try:
                stream = await open_stream(peer)
                await transfer.write_all(stream, message, self.timeouts)
                if await transfer.read_exactly(stream, len(ACK), self.timeouts) == ACK:
                    await transfer.quietly(stream.close())
                    return
            except Exception:  # noqa: BLE001 - not reachable (yet): try again
                pass
            if stream is not None:
                await transfer.reset(stream)
            await trio.sleep(RETRY)


def own_report(y_val: np.ndarray, probs: np.ndarray, train_rows: int, rows: Sequence[Mapping],
               rounds: int) -> dict:
    """A site's report: its final model's figures on its validation rows and, per round, the
    figures metrics.jsonl holds (None for a round it has no row of)."""
    final = {k: v for k, v in clinical_metrics(y_val, probs).items() if isinstance(v, int | float)}
    final = {k: (float(v) if math.isfinite(v) else None) for k, v in final.items()}
    final["train_rows"] = int(train_rows)
    by_round = {int(r["round"]): r for r in rows if isinstance(r.get("round"), int)}
    history = {name: [_figure(by_round.get(t, {}).get(f"val_{name}")) for t in range(rounds)]
               for name in HISTORY}
    return {"rows": int(len(y_val)), "rounds": int(rounds), "final": final, "history": history}


def best_round_of(reports: Mapping[int, dict], members: list[str], metric: str) -> Choice | None:
    """The best round by the median over members of `metric` in their reports."""
    return best_round({members[i]: r["history"].get(metric, []) for i, r in sorted(reports.items())})


def consortium_report(reports: Mapping[int, dict], members: list[str], names: dict[str, str],
                      consortium_id: bytes, select: str, choice: Choice | None) -> dict:
    """consortium_report.json: every member's site row, reported or missing, and the best round."""
    sites = []
    for i, peer in enumerate(members):
        r = reports.get(i)
        site: dict[str, object] = {"name": names[peer], "peer_id": peer,
                                   "status": "reported" if r is not None else "missing"}
        if r is not None:
            site.update(rows=r["rows"], metrics=r["final"], history=r["history"])
        sites.append(site)
    return {"consortium": consortium_id.hex(), "sites": sites,
            "selection": {"metric": select, "round": choice.round, "score": choice.score,
                          "members": choice.members} if choice is not None else None}


def _figure(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

