"""Structured logs: one line per event, `time level node event key=value ...`."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class EventLog:
    """Writes logfmt-style lines; values with spaces are quoted. Never pass key material."""

    def __init__(self, node: str, stream: TextIO | None = None):
        self.node = node
        self.stream = stream or sys.stderr

    def info(self, event: str, **fields: object) -> None:
        self._write("info", event, fields)

    def warn(self, event: str, **fields: object) -> None:
        self._write("warn", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._write("error", event, fields)

    def _write(self, level: str, event: str, fields: dict[str, object]) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        parts = [stamp, level, f"node={self.node}", f"event={event}"]
        parts += [f"{k}={_fmt(v)}" for k, v in fields.items()]
        self.stream.write(" ".join(parts) + "\n")
        self.stream.flush()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        value = f"{value:.6g}"
    text = str(value).replace("\n", " ")
    return f'"{text}"' if (" " in text or "=" in text or not text) else text
