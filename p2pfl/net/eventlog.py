"""Structured logs: one line per event, `time level node=... event=... key=value ...`, or with
`fmt="json"` (node.log_format) one JSON object per line with the same keys:
`{"time": ..., "level": ..., "node": ..., "event": ..., <fields>}`."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

WINDOW = 60.0  # seconds: a repeated line is written at most once per window
PER_EVENT = 10  # lines per event per window, all keys together
MAX_KEYS = 1024  # (event, key) pairs remembered, least recently seen dropped first


@dataclass
class _Window:
    start: float
    lines: int = 0  # lines written in this window (per-event state only)
    suppressed: int = 0  # lines not written since the last one


class EventLog:
    """Writes logfmt-style lines; values with spaces are quoted. Never pass key material.

    `warn_limited` is for lines a remote can repeat at will (a stranger's refusals): per
    (event, key) the first line is written, then at most one per WINDOW carrying
    `suppressed=N`; per event at most PER_EVENT lines per WINDOW are written whatever the key,
    the lines not written then are counted in one `event=log_suppressed` line. `clock` is
    monotonic seconds (injectable for tests)."""

    def __init__(self, node: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, fmt: str = "text"):
        self.node = node
        self.line = _json_line if fmt == "json" else _text_line
        self.stream = stream or sys.stderr
        self.clock = clock
        self._keys: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._events: dict[str, _Window] = {}

    def info(self, event: str, **fields: object) -> None:
        self._write("info", event, fields)

    def warn(self, event: str, **fields: object) -> None:
        self._write("warn", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._write("error", event, fields)

    def warn_limited(self, event: str, key: str, **fields: object) -> None:
        """`warn`, rate limited per (event, key) and per event (see the class docstring)."""
        now = self.clock()
        state = self._keys.get((event, key))
        if state is not None:
            self._keys.move_to_end((event, key))
            if now - state.start < WINDOW:
                state.suppressed += 1
                return
        per_event = self._event_window(event, now)
        if per_event.lines >= PER_EVENT:
            per_event.suppressed += 1
            return
        per_event.lines += 1
        if state is not None and state.suppressed:
            fields = {**fields, "suppressed": state.suppressed}
        self._write("warn", event, fields)
        self._keys[(event, key)] = _Window(start=now)
        self._keys.move_to_end((event, key))
        while len(self._keys) > MAX_KEYS:
            (old_event, _), old = self._keys.popitem(last=False)
            if old_event in self._events:  # keep its count: it shows in the summary line
                self._events[old_event].suppressed += old.suppressed

    def flush_suppressed(self) -> None:
        """Write the counts not written yet (e.g. at shutdown), one line per event."""
        totals: dict[str, int] = {e: w.suppressed for e, w in self._events.items()}
        for (event, _), state in self._keys.items():
            totals[event] = totals.get(event, 0) + state.suppressed
            state.suppressed = 0
        for event, count in totals.items():
            if count:
                self._write("warn", "log_suppressed", {"of": event, "count": count})
            self._events[event].suppressed = 0

    def _event_window(self, event: str, now: float) -> _Window:
        """This event's window; a new one after WINDOW, reporting what the last one dropped."""
        window = self._events.get(event)
        if window is not None and now - window.start < WINDOW:
            return window
        if window is not None and window.suppressed:
            self._write("warn", "log_suppressed", {"of": event, "count": window.suppressed,
                                                   "seconds": WINDOW})
        self._events[event] = _Window(start=now)
        return self._events[event]

    def _write(self, level: str, event: str, fields: dict[str, object]) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self.stream.write(self.line(stamp, level, self.node, event, fields) + "\n")
        self.stream.flush()


def _text_line(stamp: str, level: str, node: str, event: str, fields: dict[str, object]) -> str:
    parts = [stamp, level, f"node={node}", f"event={event}"]
    return " ".join(parts + [f"{k}={_fmt(v)}" for k, v in fields.items()])


def _json_line(stamp: str, level: str, node: str, event: str, fields: dict[str, object]) -> str:
    entry = {"time": stamp, "level": level, "node": node, "event": event}
    entry.update((k, _json_value(v)) for k, v in fields.items() if k not in entry)
    return json.dumps(entry, ensure_ascii=True)


def _json_value(value: object) -> object:
    """A field as JSON has it: numbers, text, booleans and lists as they are, NaN as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        value = f"{value:.6g}"
    text = str(value).replace("\n", " ")
    return f'"{text}"' if (" " in text or "=" in text or not text) else text
