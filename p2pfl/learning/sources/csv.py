"""A hospital's own table, `csv:PATH`: never partitioned, split into training and validation rows."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.sources import DataSource, Request, Table


def read_csv(
    path: Path, label_column: str = "label", site_column: str | None = None,
    classes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Read a hospital's table: one label column, numeric feature columns, optional site column.

    Labels may be any strings or numbers (mapped to 0..C-1 in sorted order, or in the order of
    `classes` when given). Every error names the file, the row and the column.
    """
    if not path.is_file():
        raise LearningSettingError(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise LearningSettingError(f"{path}: the file is empty") from None
        header = [h.strip() for h in header]
        if label_column not in header:
            raise LearningSettingError(f"{path}: no label column {label_column!r} "
                                       f"(columns: {', '.join(header)})")
        if site_column is not None and site_column not in header:
            raise LearningSettingError(f"{path}: no site column {site_column!r} "
                                       f"(columns: {', '.join(header)})")
        li = header.index(label_column)
        si = header.index(site_column) if site_column is not None else -1
        fcols = [i for i in range(len(header)) if i not in (li, si)]
        if not fcols:
            raise LearningSettingError(f"{path}: no feature columns besides the label and site columns")
        rows, labels, sites = [], [], []
        for lineno, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise LearningSettingError(f"{path}:{lineno}: {len(row)} fields, "
                                           f"the header has {len(header)}")
            vals = []
            for i in fcols:
                try:
                    v = float(row[i])
                except ValueError:
                    where = f"{path}:{lineno}: column {header[i]!r}"
                    raise LearningSettingError(f"{where} is not a number: {row[i]!r}") from None
                if not math.isfinite(v):
                    where = f"{path}:{lineno}: column {header[i]!r}"
                    raise LearningSettingError(f"{where} is {row[i]!r}, not a finite number")
                vals.append(v)
            rows.append(vals)
            labels.append(row[li].strip())
            if si >= 0:
                sites.append(row[si].strip())
    if not rows:
        raise LearningSettingError(f"{path}: no data rows")
    if classes is None:
        classes = sorted(set(labels), key=_label_key)
        if len(classes) < 2:
            raise LearningSettingError(f"{path}: column {label_column!r} has a single class; "
                                       "need at least two")
    else:
        classes = [str(c) for c in classes]
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise LearningSettingError(f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} in column "
                            f"{label_column!r} are not among the classes {classes}")
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], dtype=np.int64)
    site = None
    if si >= 0:
        site_ids = {s: k for k, s in enumerate(sorted(set(sites), key=_label_key))}
        site = np.array([site_ids[s] for s in sites], dtype=np.int64)
    return np.array(rows, dtype=np.float64), y, site, [header[i] for i in fcols]


def _label_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def _load(request: Request) -> Table:
    x, y, site, features = read_csv(Path(request.argument), request.label_column, request.site_column,
                                    request.classes)
    n_classes = len(request.classes) if request.classes else None
    return Table(f"csv:{request.argument}", x, y, features, site, n_classes)


COMPONENT = DataSource(
    name="csv",
    summary="a hospital's own CSV table (label column, numeric features, optional site column); "
            "needs data.classes on a node",
    shared=False,
    load=_load,
    argument="PATH",
    required=True,
    path=True,
)
