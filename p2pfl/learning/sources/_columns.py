"""Raw columns to a `Table`: the one conversion of every tabular source (csv, parquet, sql).

A source hands over its column names and its rows, each with the row's number in the source's
own terms (a CSV's file line, a Parquet file's or query result's 1-based data row) and a way to
name that row in messages. This picks the label column, the numeric feature columns and the
optional site column, checks every value and maps labels to 0..C-1.

Values may be text (a CSV, an untyped SQLite column) or typed (numbers, None for a missing
value). A number label is named by its shortest text: 1 and 1.0 are both '1'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import Table

RowName = Callable[[int], str]  # a row's number -> where it is, for messages ("h.csv:3")


def to_table(
    name: str,
    where: str,
    header: Sequence[str],
    rows: Iterable[tuple[int, Sequence[object]]],
    label_column: str = "label",
    site_column: str | None = None,
    classes: list[str] | None = None,
    row_name: RowName | None = None,
) -> Table:
    """The table `name` of a source's rows: float64 features, int64 labels, int64 sites or None.

    `where` names the source in messages (a file, a URL); `row_name(n)` names row `n` (default
    "WHERE, row N"). Labels map to 0..C-1 in sorted order, or in the order of `classes`.
    """
    at = row_name or (lambda n: f"{where}, row {n}")
    header = list(header)
    if label_column not in header:
        raise LearningSettingError(f"{where}: no label column {label_column!r} "
                                   f"(columns: {', '.join(header)})")
    if site_column is not None and site_column not in header:
        raise LearningSettingError(f"{where}: no site column {site_column!r} "
                                   f"(columns: {', '.join(header)})")
    li = header.index(label_column)
    si = header.index(site_column) if site_column is not None else -1
    fcols = [i for i in range(len(header)) if i not in (li, si)]
    if not fcols:
        raise LearningSettingError(f"{where}: no feature columns besides the label and site columns")
    values, labels, sites = [], [], []
    for n, row in rows:
        values.append([_number(row[i], at(n), header[i]) for i in fcols])
        labels.append(_text(row[li], at(n), header[li]))
        if si >= 0:
            sites.append(_text(row[si], at(n), header[si]))
    if not values:
        raise LearningSettingError(f"{where}: no data rows")
    fixed = classes is not None  # the caller's classes fix the class count
    if classes is None:
        classes = sorted(set(labels), key=_label_key)
        if len(classes) < 2:
            raise LearningSettingError(f"{where}: column {label_column!r} has a single class; "
                                       "need at least two")
    else:
        classes = [str(c) for c in classes]
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise LearningSettingError(f"{where}: label(s) {', '.join(map(repr, unknown[:5]))} in column "
                                       f"{label_column!r} are not among the classes {classes}")
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], dtype=np.int64)
    site = None
    if si >= 0:
        site_ids = {s: k for k, s in enumerate(sorted(set(sites), key=_label_key))}
        site = np.array([site_ids[s] for s in sites], dtype=np.int64)
    return Table(name, np.array(values, dtype=np.float64), y, [header[i] for i in fcols], site,
                 len(classes) if fixed else None)


def _number(value: object, at: str, column: str) -> float:
    """A feature value as a finite float; text is parsed like a CSV field."""
    if value is None:
        raise LearningSettingError(f"{at}: column {column!r} is empty")
    if not isinstance(value, (str, int, float, Decimal)):
        raise LearningSettingError(f"{at}: column {column!r} is not a number: {value!r}")
    try:
        v = float(value)
    except (ValueError, OverflowError):
        raise LearningSettingError(f"{at}: column {column!r} is not a number: {value!r}") from None
    if not math.isfinite(v):
        raise LearningSettingError(f"{at}: column {column!r} is {value!r}, not a finite number")
    return v


def _text(value: object, at: str, column: str) -> str:
    """A label or site value as text: stripped text, or a number's shortest form (1.0 -> '1')."""
    if isinstance(value, (float, Decimal)) and math.isfinite(value) and value == int(value):
        value = int(value)
    text = "" if value is None else str(value).strip()
    if not text:
        raise LearningSettingError(f"{at}: column {column!r} is empty")
    return text


def _label_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)
