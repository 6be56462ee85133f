"""Raw rows to a `Table`: the one conversion of every tabular source (csv, parquet, sql).

A source hands over its column names and its rows, each with the row's number in the source's
own terms (a CSV's file line, a Parquet file's or query result's 1-based data row) and a way to
name that row in messages. This applies the feature schema (renames, the plan's columns, ignored
columns, the missing-value policy), picks the label and the optional site column, checks every
value and maps labels to 0..C-1.

Values may be text (a CSV, an untyped SQLite column) or typed (numbers, None for a missing
value). A number label or category is named by its shortest text: 1 and 1.0 are both '1'.
A missing cell is None, empty or blank text, or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column, FeatureSchema
from p2pfl.learning.sources import RawRows, Request, RowName, Table

Cells = list[object]


def tabular(name: str, read: Callable[[Request], RawRows]) -> Callable[[Request], Table]:
    """The loader of a tabular source: `to_table` of what `read` returns."""
    def load(request: Request) -> Table:
        return from_rows(f"{name}:{request.argument}", read(request), request)
    return load


def from_rows(name: str, raw: RawRows, request: Request) -> Table:
    """The table `name` of a source's raw rows, as `request` asks (label, site, classes, schema)."""
    return to_table(name, raw.where, raw.header, raw.rows, request.label_column, request.site_column,
                    request.classes, raw.row_name, request.schema)


def to_table(
    name: str,
    where: str,
    header: Sequence[str],
    rows: Iterable[tuple[int, Sequence[object]]],
    label_column: str | None = "label",
    site_column: str | None = None,
    classes: list[str] | None = None,
    row_name: RowName | None = None,
    schema: FeatureSchema | None = None,
) -> Table:
    """The table `name` of a source's rows: float64 features, int64 labels, int64 sites or None.

    `where` names the source in messages (a file, a URL); `row_name(n)` names row `n` (default
    "WHERE, row N"). Labels map to 0..C-1 in sorted order, or in the order of `classes`;
    `label_column` None: rows without labels (to predict), y all -1.
    Features follow the schema's columns (its order), else every other column in table order.
    """
    schema = schema or FeatureSchema()
    at = row_name or (lambda n: f"{where}, row {n}")
    header = _renamed([str(h) for h in header], schema, where)
    li = _index(header, label_column, "label", where) if label_column is not None else -1
    si = _index(header, site_column, "site", where) if site_column is not None else -1
    planned = set(schema.ignore) | {c.name for c in schema.columns}
    for special in (label_column, site_column):
        if special is not None and special in planned:
            raise LearningSettingError(f"{where}: column {special!r} is the label or site column; "
                                       "leave it out of features.columns and features.ignore")
    fcols = _feature_indices(header, li, si, schema, where)
    kept: list[tuple[int, Cells]] = []
    labels, sites, dropped = [], [], 0
    for n, row in rows:
        label = _text(row[li], at(n), header[li]) if li >= 0 else ""  # a missing label: an error
        site = _text(row[si], at(n), header[si]) if si >= 0 else ""
        cells = [row[i] for i in fcols]
        gap = next((k for k, v in enumerate(cells) if is_missing(v)), None)
        if gap is not None and schema.missing == "error":
            raise LearningSettingError(f"{at(n)}: column {header[fcols[gap]]!r} is empty "
                                       "(features.missing = drop_row or impute accepts missing values)")
        if gap is not None and schema.missing == "drop_row":
            dropped += 1
            continue
        kept.append((n, cells))
        labels.append(label)
        sites.append(site)
    if not kept:
        left = f" left after dropping {dropped} with missing values" if dropped else ""
        raise LearningSettingError(f"{where}: no data rows{left}")
    names = [header[i] for i in fcols]
    columns = schema.columns or _inferred(names, kept, schema, where, at)
    x = _matrix(kept, columns, at)
    fixed = classes is not None  # the caller's classes fix the class count
    if li < 0:
        y = np.full(len(kept), -1, dtype=np.int64)
    elif classes is None:
        classes = sorted(set(labels), key=label_key)
        if len(classes) < 2:
            raise LearningSettingError(f"{where}: column {label_column!r} has a single class; "
                                       "need at least two")
    else:
        classes = [str(c) for c in classes]
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise LearningSettingError(f"{where}: label(s) {', '.join(map(repr, unknown[:5]))} in column "
                                       f"{label_column!r} are not among the classes {classes}")
    if li >= 0:
        index = {c: k for k, c in enumerate(classes)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
    site_array = None
    if si >= 0:
        site_ids = {s: k for k, s in enumerate(sorted(set(sites), key=label_key))}
        site_array = np.array([site_ids[s] for s in sites], dtype=np.int64)
    return Table(name, x, y, names, site_array, len(classes) if fixed else None, tuple(columns), dropped)


def _renamed(header: list[str], schema: FeatureSchema, where: str) -> list[str]:
    """The header with the schema's renames applied; no name twice."""
    for local in schema.rename:
        if local not in header:
            raise LearningSettingError(f"{where}: features.rename names column {local!r}, which the table "
                                       f"lacks (columns: {', '.join(header)})")
    header = [schema.rename.get(h, h) for h in header]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise LearningSettingError(f"{where}: two columns are called {twice[0]!r}")
    return header


def _index(header: list[str], column: str, role: str, where: str) -> int:
    if column not in header:
        raise LearningSettingError(f"{where}: no {role} column {column!r} (columns: {', '.join(header)})")
    return header.index(column)


def _feature_indices(header: list[str], li: int, si: int, schema: FeatureSchema, where: str) -> list[int]:
    """Header positions of the feature columns, in the order of the table's x."""
    if not schema.columns:
        fcols = [i for i, h in enumerate(header) if i not in (li, si) and h not in schema.ignore]
        if not fcols:
            raise LearningSettingError(f"{where}: no feature columns besides the label and site columns")
        return fcols
    for column in schema.columns:
        if column.name not in header:
            raise LearningSettingError(f"{where}: no column {column.name!r} of the plan "
                                       f"(columns: {', '.join(header)})")
    planned = {c.name for c in schema.columns} | set(schema.ignore)
    extra = [h for i, h in enumerate(header) if i not in (li, si) and h not in planned]
    if len(extra) == 1:
        raise LearningSettingError(f"{where}: column {extra[0]!r} is not in the plan: list it in "
                                   "features.columns or features.ignore")
    if extra:
        raise LearningSettingError(f"{where}: columns {', '.join(map(repr, extra))} are not in the plan: "
                                   "list them in features.columns or features.ignore")
    return [header.index(c.name) for c in schema.columns]


def _inferred(names: list[str], kept: list[tuple[int, Cells]], schema: FeatureSchema,
              where: str, at: RowName) -> tuple[Column, ...]:
    """Columns inferred from the values: numeric when every value is a number, else categorical
    (refused when the schema does not infer categories: each hospital would find its own)."""
    unknown = sorted(set(schema.categorical) - set(names))
    if unknown:
        raise LearningSettingError(f"{where}: no column {unknown[0]!r} to treat as categorical "
                                   f"(feature columns: {', '.join(names)})")
    columns = tuple(infer_column(name, [cells[k] for _, cells in kept], name in schema.categorical)
                    for k, name in enumerate(names))
    if schema.infer_categories or all(c.kind == "numeric" for c in columns):
        return columns
    text = []
    for k, column in enumerate(columns):
        if column.kind == "categorical":
            n, value = next((n, cells[k]) for n, cells in kept
                            if not is_missing(cells[k]) and not is_number(cells[k]))
            text.append(f"{column.name!r} ({value!r} at {at(n)})")
    raise LearningSettingError(f"{where}: text column(s) {', '.join(text)}: list them with their "
                               "categories in features.columns (p2pfl plan draft proposes them)")


def infer_column(name: str, values: Iterable[object], categorical: bool = False) -> Column:
    """The column `name` its values suggest: numeric when every value present is a number (and
    `categorical` is False), else categorical with the categories found (sorted like labels)."""
    present = [v for v in values if not is_missing(v)]
    if not categorical and all(is_number(v) for v in present):
        return Column(name, "numeric")
    found = {_text(v, "", name) for v in present}
    return Column(name, "categorical", tuple(sorted(found, key=label_key)))


def _matrix(kept: list[tuple[int, Cells]], columns: Sequence[Column], at: RowName) -> np.ndarray:
    """float64 [rows, columns]: a number, a category's index, NaN for a missing cell."""
    codes = [{c: float(k) for k, c in enumerate(col.categories)} for col in columns]
    out = np.empty((len(kept), len(columns)), dtype=np.float64)
    for r, (n, cells) in enumerate(kept):
        for k, (value, col) in enumerate(zip(cells, columns, strict=True)):
            if is_missing(value):
                out[r, k] = math.nan
            elif col.kind == "numeric":
                out[r, k] = _number(value, at(n), col.name)
            else:
                out[r, k] = _category(value, at(n), col, codes[k])
    return out


def _category(value: object, at: str, column: Column, codes: dict[str, float]) -> float:
    text = _text(value, at, column.name)
    if text not in codes:
        raise LearningSettingError(f"{at}: column {column.name!r} has {text!r}, not one of the plan's "
                                   f"categories {', '.join(map(repr, column.categories))}")
    return codes[text]


def is_missing(value: object) -> bool:
    """A missing cell: None, empty or blank text, NaN (typed, or as text: 'nan')."""
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip().lower()
        return text in ("", "nan", "+nan", "-nan")
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return isinstance(value, Decimal) and value.is_nan()


def is_number(value: object) -> bool:
    """A value a numeric column takes: a number, or text that reads as one."""
    if isinstance(value, (int, float, Decimal, np.number)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _number(value: object, at: str, column: str) -> float:
    """A feature value as a finite float; text is parsed like a CSV field."""
    if not isinstance(value, (str, int, float, Decimal, np.number)):
        raise LearningSettingError(f"{at}: column {column!r} is not a number: {value!r}")
    try:
        v = float(value)
    except (ValueError, OverflowError):
        raise LearningSettingError(f"{at}: column {column!r} is not a number: {value!r}") from None
    if not math.isfinite(v):
        raise LearningSettingError(f"{at}: column {column!r} is {value!r}, not a finite number")
    return v


def _text(value: object, at: str, column: str) -> str:
    """A label, site or category value as text: stripped text, or a number's shortest form (1.0 -> '1')."""
    if is_missing(value):
        raise LearningSettingError(f"{at}: column {column!r} is empty")
    if isinstance(value, (float, Decimal)) and math.isfinite(value) and value == int(value):
        value = int(value)
    return str(value).strip()


def as_text(value: object) -> str:
    """A present value's text as labels and categories name it ('' for a missing one)."""
    return "" if is_missing(value) else _text(value, "", "")


def label_key(v: str) -> tuple[int, float, str]:
    """The order of labels, sites and inferred categories: numbers by value, then text."""
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)
