"""A hospital's own table, `csv:PATH`: never partitioned, split into training and validation rows."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import FeatureSchema
from p2pfl.learning.sources import DataSource, RawRows, Request, Table
from p2pfl.learning.sources._columns import tabular, to_table


def read_rows(path: Path) -> RawRows:
    """The header and data rows of a CSV file; a row is named by its file line (`h.csv:3`)."""
    if not path.is_file():
        raise LearningSettingError(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise LearningSettingError(f"{path}: the file is empty") from None
        rows = list(_rows(reader, path, len(header)))
    return RawRows(str(path), header, rows, lambda line: f"{path}:{line}")


def read_table(
    path: Path, label_column: str = "label", site_column: str | None = None,
    classes: list[str] | None = None, name: str = "", schema: FeatureSchema | None = None,
) -> Table:
    """Read a hospital's table: one label column, feature columns (the schema's, else all the
    others), optional site column.

    Labels may be any strings or numbers (mapped to 0..C-1 in sorted order, or in the order of
    `classes` when given). Every error names the file, the row (its line) and the column.
    """
    raw = read_rows(path)
    return to_table(name or f"csv:{path}", raw.where, raw.header, raw.rows, label_column, site_column,
                    classes, raw.row_name, schema)


def _rows(reader: Iterator[list[str]], path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    """(file line, fields) of each data row; blank lines are skipped."""
    for lineno, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != width:
            raise LearningSettingError(f"{path}:{lineno}: {len(row)} fields, the header has {width}")
        yield lineno, row


def read_csv(
    path: Path, label_column: str = "label", site_column: str | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """(x, y, site, feature names) of a CSV table (see `read_table`)."""
    t = read_table(path, label_column, site_column, classes)
    return t.x, t.y, t.site, t.features


def _read(request: Request) -> RawRows:
    return read_rows(Path(request.argument))


COMPONENT = DataSource(
    name="csv",
    summary="a hospital's own CSV table (label column, feature columns, optional site column); "
            "needs task.classes in the plan",
    shared=False,
    load=tabular("csv", _read),
    read=_read,
    argument="PATH",
    required=True,
    path=True,
)
