"""A draft feature schema from a hospital's raw rows (`p2pfl plan draft`): what a consortium
would list in its plan, to be read and corrected by a person before it is shared.

Text columns become categorical with the categories found; a column whose every value is
distinct and text or integer-valued (a patient number, a record ID) is proposed for ignoring,
since a model must not learn from it; each proposal has one line of notes saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column
from p2pfl.learning.sources import RawRows
from p2pfl.learning.sources._columns import as_text, infer_column, is_missing, label_key


@dataclass(frozen=True)
class Draft:
    """The proposal: feature columns, columns to ignore, the classes found, missing cells."""

    columns: tuple[Column, ...]
    ignore: tuple[str, ...]
    classes: list[str]
    missing: dict[str, int]  # column -> cells missing (every column of the table)
    notes: list[str] = field(default_factory=list)  # one line each


def draft_schema(rows: RawRows, label_column: str = "label", site_column: str | None = None) -> Draft:
    """The draft schema of these rows; `label_column` (and `site_column`) are not features."""
    header = [str(h) for h in rows.header]
    for column in (label_column, site_column):
        if column is not None and column not in header:
            raise LearningSettingError(f"{rows.where}: no column {column!r} (columns: {', '.join(header)})")
    values = {name: [row[i] for _, row in rows.rows] for i, name in enumerate(header)}
    missing = {name: sum(is_missing(v) for v in column) for name, column in values.items()}
    columns: list[Column] = []
    ignore: list[str] = []
    notes: list[str] = []
    for name in header:
        if name in (label_column, site_column):
            continue
        present = [v for v in values[name] if not is_missing(v)]
        if not present:
            ignore.append(name)
            notes.append(f"{name}: every value is missing: ignored")
            continue
        if _identifier(present):
            ignore.append(name)
            notes.append(f"{name}: every value distinct, likely an identifier: ignored")
            continue
        column = infer_column(name, present)
        columns.append(column)
        if column.kind == "categorical":
            notes.append(f"{name}: text, categorical with {len(column.categories)} categories "
                         "found here (add any other hospital's)")
        if missing[name]:
            notes.append(f"{name}: {missing[name]} of {len(values[name])} values missing "
                         "(features.missing: drop_row or impute)")
    labels = {as_text(v) for v in values[label_column]} - {""}
    if missing[label_column]:
        notes.append(f"{label_column}: {missing[label_column]} labels missing (such rows are refused)")
    return Draft(tuple(columns), tuple(ignore), sorted(labels, key=label_key), missing, notes)


def _identifier(present: list[object]) -> bool:
    """Every value distinct (two at least), each text or integer-valued (floats are measurements)."""
    if len(present) < 2 or len({as_text(v) for v in present}) != len(present):
        return False
    return all(_text_or_integer(v) for v in present)


def _text_or_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return True  # text
        try:
            int(value)
        except ValueError:
            return False  # '1.5', '2e3': a float
        return True
    return False  # typed floats, decimals, dates: measurements
