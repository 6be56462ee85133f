"""Prometheus metrics of a node (prometheus_client), served on `node.metrics_listen`
(e.g. "127.0.0.1:9464"; off by default). Every series is this node's own view:

    p2pfl_rounds_done_total, p2pfl_round                 rounds finished, the round it is at
    p2pfl_round_seconds, p2pfl_train_seconds             histograms per round
    p2pfl_bytes_received_total, p2pfl_bytes_sent_total   update bytes (as metrics.jsonl counts them)
    p2pfl_updates_total{result, reason}                  updates received: accepted, refused,
                                                         rejected, dropped; reason: its first word
    p2pfl_peers_connected                                roster members with an open connection
    p2pfl_epsilon                                        DP-SGD privacy spent so far

The round, byte and epsilon series are updated from the metrics.jsonl rows when they are
written, so they equal what the file says. Labels a peer can influence are bounded: a reason is
one lowercase word of at most 24 letters, and at most MAX_REASONS distinct ones ("other" after).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from p2pfl.errors import UserError

MAX_REASONS = 32
_WORD = re.compile(r"[a-z]{1,24}")
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class NodeMetrics:
    """The series of one node, in their own registry."""

    def __init__(self, peers_connected: Callable[[], int]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.rounds = Counter("p2pfl_rounds_done", "rounds finished (metrics.jsonl rows)", registry=r)
        self.round = Gauge("p2pfl_round", "the round this node is at", registry=r)
        self.round_seconds = Histogram("p2pfl_round_seconds", "seconds per round", buckets=SECONDS,
                                       registry=r)
        self.train_seconds = Histogram("p2pfl_train_seconds", "seconds of local training per round",
                                       buckets=SECONDS, registry=r)
        self.bytes_in = Counter("p2pfl_bytes_received", "update bytes received", registry=r)
        self.bytes_out = Counter("p2pfl_bytes_sent", "update bytes sent", registry=r)
        self.updates = Counter("p2pfl_updates", "updates received, by result and reason",
                               ["result", "reason"], registry=r)
        self.peers = Gauge("p2pfl_peers_connected", "roster members with an open connection", registry=r)
        self.peers.set_function(lambda: float(peers_connected()))
        self.epsilon = Gauge("p2pfl_epsilon", "DP-SGD privacy spent so far (0: DP off)", registry=r)
        self._reasons: set[str] = set()
        self._server = None

    def row(self, row: Mapping[str, object]) -> None:
        """A metrics.jsonl row was written."""
        self.rounds.inc()
        self.round.set(float(row["round"]) + 1)  # type: ignore[arg-type]
        for histogram, key in ((self.round_seconds, "seconds"), (self.train_seconds, "train_seconds")):
            if isinstance(row.get(key), int | float):
                histogram.observe(float(row[key]))  # type: ignore[arg-type]
        self.bytes_in.inc(float(row.get("bytes_in") or 0))  # type: ignore[arg-type]
        self.bytes_out.inc(float(row.get("bytes_out") or 0))  # type: ignore[arg-type]
        if isinstance(row.get("epsilon"), int | float):
            self.epsilon.set(float(row["epsilon"]))  # type: ignore[arg-type]

    def update(self, result: str, reason: str = "") -> None:
        """An update was received and answered with `result` (accepted, refused, rejected, dropped)."""
        word = _WORD.match(reason.lower())
        label = word.group(0) if word else ("" if not reason else "other")
        if label and label not in self._reasons:
            if len(self._reasons) >= MAX_REASONS:
                label = "other"
            else:
                self._reasons.add(label)
        self.updates.labels(result=result, reason=label).inc()

    def serve(self, listen: str) -> None:
        """Serve /metrics on HOST:PORT (a thread of prometheus_client)."""
        host, port = parse_listen(listen)
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UserError(f"node.metrics_listen {listen}: cannot listen there "
                            f"({exc.strerror or exc})") from None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def parse_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:9464" -> ("127.0.0.1", 9464); UserError naming the setting."""
    host, colon, port = listen.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"node.metrics_listen must be HOST:PORT, e.g. 127.0.0.1:9464, got {listen!r}")
    return host.strip("[]"), int(port)
