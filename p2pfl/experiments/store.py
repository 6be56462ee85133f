"""An experiment's results folder: results.csv (one row per run) and history.csv (per round).

Each finished run is added by rewriting both files atomically (history first), so a sweep that
is interrupted at any point keeps every run it finished, and results.csv lists only runs whose
history is complete. Rows are kept in the order of the plan, so a rerun writes the same files.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from p2pfl.atomic import open_atomic

RESULTS = "results.csv"
HISTORY = "history.csv"


class ResultsStore:
    """The rows of results.csv and history.csv, kept in memory and written through atomically."""

    def __init__(self, folder: Path, order: list[str] | None = None) -> None:
        self.folder = Path(folder)
        self.order = {key: i for i, key in enumerate(order or [])}
        self.results = _read(self.folder / RESULTS)
        done = {row["key"] for row in self.results}
        # History rows of a run that never reached results.csv are left over from a crash.
        self.history = [row for row in _read(self.folder / HISTORY) if row["key"] in done]

    def done(self) -> set[str]:
        """Keys of the runs already finished."""
        return {row["key"] for row in self.results}

    def add(self, row: dict[str, object], history: list[dict[str, object]]) -> None:
        """Record one finished run (replacing an earlier row with the same key) and write."""
        key = str(row["key"])
        self.results = [r for r in self.results if r["key"] != key] + [_text(row)]
        self.history = [r for r in self.history if r["key"] != key]
        self.history += [_text({"key": key, **h}) for h in history]
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.history or (self.folder / HISTORY).exists():  # consensus runs have no history
            _write(self.folder / HISTORY, self._sorted(self.history))
        _write(self.folder / RESULTS, self._sorted(self.results))

    def _sorted(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        last = len(self.order)
        return sorted(rows, key=lambda r: self.order.get(r["key"], last))  # stable: rounds stay in order


def format_value(value: object) -> str:
    """How numbers are written: 6 significant digits, `inf` and `nan` spelled out."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return "" if value is None else str(value)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings ([] when the file does not exist)."""
    return _read(Path(path))


def _text(row: dict[str, object]) -> dict[str, str]:
    return {k: format_value(v) for k, v in row.items()}


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    with open_atomic(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header) or ["key"], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
