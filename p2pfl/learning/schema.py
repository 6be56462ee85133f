"""The feature schema a consortium's plan shares: which columns are features, of what kind.

The plan lists each column (`features.columns`): numeric, or categorical with its categories in
a fixed order, so every hospital encodes a table alike (one-hot positions follow the plan, not
the order a hospital's rows happen to show). It also names columns to ignore (identifiers), a
missing-value policy and, per hospital, renames of local column names to the plan's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from p2pfl.learning.errors import LearningSettingError

MISSING_POLICIES = ("error", "drop_row", "impute")
KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class Column:
    """One feature column: numeric, or categorical with its categories in the plan's order."""

    name: str
    kind: str  # "numeric" | "categorical"
    categories: tuple[str, ...] = ()


def numeric_columns(names: list[str] | tuple[str, ...]) -> tuple[Column, ...]:
    """All-numeric columns of these names (bundled and synthetic tables)."""
    return tuple(Column(n, "numeric") for n in names)


def parse_columns(raw: list[dict]) -> tuple[Column, ...]:
    """The plan's `features.columns`: a list of `{ name = "age", type = "numeric" }` or
    `{ name = "sex", type = "categorical", categories = ["f", "m"] }` (type defaults to numeric)."""
    if not isinstance(raw, list):
        raise LearningSettingError("features.columns must be a list of tables "
                                   "({ name = ..., type = ... })")
    columns: list[Column] = []
    for i, entry in enumerate(raw):
        at = f"features.columns[{i}]"
        if not isinstance(entry, dict):
            raise LearningSettingError(f"{at} must be a table ({{ name = ..., type = ... }})")
        unknown = sorted(set(entry) - {"name", "type", "categories"})
        if unknown:
            raise LearningSettingError(f"{at}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                       "the keys are name, type, categories")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise LearningSettingError(f"{at}: name must be a non-empty string")
        if any(c.name == name for c in columns):
            raise LearningSettingError(f"{at}: column {name!r} is listed twice")
        kind = entry.get("type", "numeric")
        if kind not in KINDS:
            raise LearningSettingError(f"{at} ({name!r}): type must be numeric or categorical, got {kind!r}")
        categories = entry.get("categories")
        if kind == "numeric":
            if categories is not None:
                raise LearningSettingError(f"{at} ({name!r}): a numeric column has no categories")
            columns.append(Column(name, kind))
            continue
        if (not isinstance(categories, list) or not categories
                or not all(isinstance(c, str) and c.strip() for c in categories)):
            raise LearningSettingError(f"{at} ({name!r}): a categorical column needs categories, "
                                       "a non-empty list of strings")
        if len(set(categories)) != len(categories):
            twice = sorted({c for c in categories if categories.count(c) > 1})
            raise LearningSettingError(f"{at} ({name!r}): category {twice[0]!r} is listed twice")
        columns.append(Column(name, kind, tuple(categories)))
    return tuple(columns)


@dataclass(frozen=True)
class FeatureSchema:
    """Which columns of a table are features and how missing cells are treated.

    `columns == ()` means infer them from the table (every column besides the label, the site and
    the ignored ones, in table order); `infer_categories` False (a node) refuses to infer the
    categories of a text column, since each hospital would find its own.
    """

    columns: tuple[Column, ...] = ()
    ignore: tuple[str, ...] = ()
    missing: str = "error"
    rename: Mapping[str, str] = field(default_factory=dict)  # local column name -> plan name
    infer_categories: bool = True
    categorical: tuple[str, ...] = ()  # inferred columns taken as categorical although numbers

    def __post_init__(self) -> None:
        if self.missing not in MISSING_POLICIES:
            raise LearningSettingError(f"features.missing must be one of {', '.join(MISSING_POLICIES)}, "
                                       f"got {self.missing!r}")
        names = [c.name for c in self.columns]
        if self.categorical and self.columns:
            raise LearningSettingError("categorical columns are chosen by features.columns or by "
                                       "inference, not both")
        if len(set(names)) != len(names):
            raise LearningSettingError("features.columns: a column is listed twice")
        for name in self.ignore:
            if not isinstance(name, str) or not name.strip():
                raise LearningSettingError("features.ignore must be a list of column names")
            if name in names:
                raise LearningSettingError(f"features.ignore: {name!r} is also in features.columns")
        targets: dict[str, str] = {}
        for local, plan in self.rename.items():
            if not isinstance(plan, str) or not plan.strip():
                raise LearningSettingError(f"features.rename: {local!r} must map to a column name")
            if plan in targets:
                raise LearningSettingError(f"features.rename: {targets[plan]!r} and {local!r} "
                                           f"both become {plan!r}")
            targets[plan] = local

    @property
    def fixed(self) -> bool:
        """True when the schema chooses columns (a source with fixed columns cannot take it)."""
        return bool(self.columns or self.ignore or self.rename or self.categorical)
