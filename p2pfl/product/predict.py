"""Predictions of a bundle for a table's rows (`p2pfl predict`), read the way a node reads its
training table: the source's raw rows (`csv:PATH`, `parquet:PATH`, or a file by its suffix)
through `to_table` with the bundle's feature schema, this hospital's renames and the plan's
missing-value policy. A missing plan column, a column the plan does not know, a category or a
class not in the plan: one line naming it. The label column may be absent (y is then None)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.learning.sources import RawRows, table_rows
from p2pfl.learning.sources._columns import as_text, is_missing, to_table
from p2pfl.product.bundle import BATCH, Bundle

PROGRESS_ROWS = 20_000  # more rows than this: a progress bar over the batches
Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass(frozen=True)
class Predictions:
    """One row per input row kept (features.missing = drop_row leaves some out)."""

    id_name: str  # the ID column's name ("row": the 1-based row number)
    ids: list[str]
    probs: np.ndarray  # float32 [rows, classes]
    y: np.ndarray | None  # class indices when the data has the label column
    classes: list[str]

    @property
    def predicted(self) -> list[str]:
        return [self.classes[k] for k in self.probs.argmax(axis=1)]


def parse_renames(pairs: Sequence[str]) -> dict[str, str]:
    """['Age (years)=age'] -> {'Age (years)': 'age'} (--rename LOCAL=PLAN)."""
    out: dict[str, str] = {}
    for pair in pairs:
        local, eq, plan = pair.partition("=")
        if not eq or not local.strip() or not plan.strip():
            raise UserError(f"--rename {pair!r}: give LOCAL=PLAN (this table's column name, the plan's)")
        out[local.strip()] = plan.strip()
    return out


def renames(pairs: Sequence[str], config: Path | None = None) -> dict[str, str]:
    """This hospital's column names -> the plan's: its node.toml's data.columns (`config`), then
    the --rename pairs."""
    out: dict[str, str] = {}
    if config is not None:
        from p2pfl.settings.load import node_settings

        out.update(node_settings(config).data.columns)
    out.update(parse_renames(pairs))
    return out


def predict(bundle: Bundle, data: str, rename: Mapping[str, str] | None = None,
            id_column: str | None = None, progress: Progress | None = None) -> Predictions:
    """The bundle's probabilities for the rows of `data` (csv:PATH, parquet:PATH or a bare
    file: `p2pfl.learning.sources.table_rows`); `rename` maps this table's column names to the
    plan's; `id_column` names each row (default: its row number)."""
    raw = table_rows(data, Path.cwd())
    rename = dict(rename or {})
    header = [rename.get(str(h), str(h)) for h in raw.header]
    schema = replace(bundle.schema, rename=rename)
    planned = {c.name for c in schema.columns}
    if id_column is not None:
        if id_column not in header:
            raise UserError(f"{raw.where}: no ID column {id_column!r} (columns: {', '.join(header)})")
        if id_column not in planned | set(schema.ignore) | {bundle.label_column}:
            schema = replace(schema, ignore=(*schema.ignore, id_column))
    label = bundle.label_column if bundle.label_column in header else None
    table = to_table(raw.where, raw.where, raw.header, raw.rows, label, classes=bundle.classes,
                     row_name=raw.row_name, schema=schema)
    kept = _kept(raw, header, schema.missing, [c.name for c in schema.columns])
    if id_column is None:
        ids = [str(k + 1) for k in kept]
    else:
        at = header.index(id_column)
        ids = [as_text(raw.rows[k][1][at]) for k in kept]
    probs = np.empty((len(table.x), len(bundle.classes)), dtype=np.float32)
    for start in range(0, len(table.x), BATCH):
        probs[start:start + BATCH] = bundle.predict_proba(table.x[start:start + BATCH])
        if progress is not None:
            progress(min(start + BATCH, len(table.x)), len(table.x))
    return Predictions(id_column or "row", ids, probs, table.y if label is not None else None,
                       bundle.classes)


def _kept(raw: RawRows, header: list[str], missing: str, features: list[str]) -> list[int]:
    """Positions of the rows `to_table` keeps: all, but under drop_row those with no empty feature."""
    if missing != "drop_row":
        return list(range(len(raw.rows)))
    at = [header.index(name) for name in features]
    return [k for k, (_, row) in enumerate(raw.rows) if not any(is_missing(row[i]) for i in at)]


def write_predictions(pred: Predictions, out: Path) -> None:
    """A CSV: the ID column, p_<class> for each class, predicted."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([pred.id_name, *(f"p_{c}" for c in pred.classes), "predicted"])
    for row_id, p, label in zip(pred.ids, pred.probs.tolist(), pred.predicted, strict=True):
        writer.writerow([row_id, *(f"{v:.7g}" for v in p), label])
    write_atomic(out, buf.getvalue())


class progress_bar:
    """A rich progress bar over the rows on stderr, shown once the input has more than
    PROGRESS_ROWS rows (and stderr is a terminal)."""

    def __enter__(self) -> progress_bar:
        self.bar = None
        self.task = None
        return self

    def __call__(self, done: int, total: int) -> None:
        if total <= PROGRESS_ROWS:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            console = Console(stderr=True)
            self.bar = Progress("predict", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=console, disable=not console.is_terminal)
            self.bar.start()
            self.task = self.bar.add_task("rows", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
