"""What `p2pfl status` shows: a node's state and round, each member's last round heard and when,
updates refused in the last hour by reason, epsilon spent and the latest validation figures.

`NodeStatus` is kept by the running daemon (it answers over p2pfl.net.admin); `from_state_dir`
rebuilds the same view from the state folder of a node that is not running (metrics.jsonl and
audit.jsonl), so both give one `snapshot()` shape:

    {"node", "running", "state", "round", "rounds", "roster_version", "time", "epsilon", "validation",
     "members": [{"name", "round", "state", "last_heard", "seconds_ago", "via"}],
     "refused_last_hour": [{"result", "reason", "count"}], "note"}

Everything a peer can influence is bounded: refusals kept are at most MAX_REFUSALS, each reason
normalised (digits as N) and cut to REASON_CHARS, and at most MAX_REASONS distinct ones shown.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from p2pfl.net.audit import AUDIT
from p2pfl.net.checkpoint import read_metrics
from p2pfl.protocol.status_line import State

WINDOW = 3600.0  # seconds of refusals counted
MAX_REFUSALS = 4096
MAX_REASONS = 20
REASON_CHARS = 100
VALIDATION = ("val_accuracy", "val_balanced_accuracy", "val_auroc", "train_loss")
NOT_ACCEPTED = {"update_refused": "refused", "update_rejected": "rejected", "update_dropped": "dropped"}


@dataclass
class Heard:
    """The last word of one member: the round it was at, its state if it said, when we heard."""

    round: int
    state: State | None
    at: float  # this machine's clock (seconds since the epoch)
    via: str  # "self", "update" or "status line"


class NodeStatus:
    """The status of one node, updated by the daemon as it runs."""

    def __init__(self, node: str, members: list[str], rounds: int, clock: Callable[[], float] = time.time):
        self.node, self.members, self.rounds, self.clock = node, members, rounds, clock
        self.state = State.STARTING
        self.round = 0
        self.heard_from: dict[str, Heard] = {}
        self.refusals: deque[tuple[float, str, str]] = deque(maxlen=MAX_REFUSALS)
        self.latest: dict[str, object] = {}
        self.note: str | None = None  # said under the status (e.g. why a node is not running)
        self.roster_version = 1  # of the era this node is in (p2pfl.net.membership)

    def set(self, state: State, round: int) -> None:
        """This node is now in `state` with `round` rounds done."""
        self.state, self.round = state, round

    def heard(self, member: str, round: int, via: str, state: State | None = None,
              at: float | None = None) -> None:
        """`member` said it is at `round` (an update of that round, or its status line)."""
        at = self.clock() if at is None else at
        held = self.heard_from.get(member)
        if held is None or round > held.round or (round == held.round and at >= held.at):
            keep = state if state is not None or held is None or round > held.round else held.state
            self.heard_from[member] = Heard(round, keep, at, via)

    def refused(self, result: str, reason: str, at: float | None = None) -> None:
        """An update was not accepted (`result`: refused, rejected or dropped) for `reason`."""
        self.refusals.append((self.clock() if at is None else at, result, _normalised(reason)))

    def row(self, row: Mapping[str, object]) -> None:
        """A metrics.jsonl row was written: its figures are the latest."""
        self.latest = dict(row)

    def snapshot(self, running: bool = True) -> dict[str, object]:
        """The view `p2pfl status` prints (see the module doc)."""
        now = self.clock()
        me = Heard(self.round, self.state, now, "self")
        members = []
        for name in self.members:
            h = me if name == self.node else self.heard_from.get(name)
            members.append({"name": name, "round": h.round if h else None,
                             "state": h.state.label if h and h.state is not None else None,
                             "last_heard": _iso(h.at) if h else None,
                             "seconds_ago": round(max(0.0, now - h.at), 1) if h else None,
                             "via": h.via if h else None})
        recent = Counter((result, reason) for at, result, reason in self.refusals if at >= now - WINDOW)
        refused = [{"result": result, "reason": reason, "count": n}
                   for (result, reason), n in recent.most_common(MAX_REASONS)]
        return {"node": self.node, "running": running, "state": self.state.label, "round": self.round,
                "rounds": self.rounds, "roster_version": self.roster_version, "time": _iso(now),
                "epsilon": self.latest.get("epsilon"),
                "validation": {k: self.latest[k] for k in VALIDATION if k in self.latest},
                "members": members, "refused_last_hour": refused, "note": self.note}


def from_state_dir(state_dir: Path, node: str, members: list[str], rounds: int,
                   clock: Callable[[], float] = time.time) -> NodeStatus:
    """The status of a node that is not running, from its state folder: its round and latest
    figures from metrics.jsonl, updates accepted and refused from audit.jsonl."""
    status = NodeStatus(node, members, rounds, clock)
    rows = read_metrics(state_dir)
    if rows:
        status.row(rows[-1])
    done = int(rows[-1]["round"]) + 1 if rows else 0
    stopped = False
    for entry in _audit_entries(Path(state_dir) / AUDIT):
        event, at = entry.get("event"), _seconds(entry.get("time"))
        if event == "update_accepted" and isinstance(entry.get("round"), int):
            status.heard(str(entry.get("peer")), entry["round"], "update", at=at)
        elif event in NOT_ACCEPTED:
            status.refused(NOT_ACCEPTED[event], str(entry.get("reason") or ""), at=at)
        elif event in ("start", "stop"):
            stopped = event == "stop"
    status.set(State.DONE if done >= rounds else State.STOPPED, done)
    if not stopped and done < rounds:
        status.note = "its audit log ends without a stop: the node was killed or crashed"
    return status


def _audit_entries(path: Path) -> Iterable[dict]:
    """The audit log's lines as dicts (a torn or bad line is skipped: `audit verify` judges them)."""
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def _normalised(reason: str) -> str:
    return re.sub(r"\d+", "N", reason.splitlines()[0] if reason else "")[:REASON_CHARS]


def _seconds(text: object) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
