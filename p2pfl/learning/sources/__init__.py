"""Data sources: one module per source, each defining `COMPONENT`, a `DataSource`.

A source is named in settings as `name` or `name:ARGUMENT` (`csv:PATH`, `synthetic:k=v,...`).
A *shared* source is a table every member loads identically and partitions among themselves
(bundled or synthetic data: a trial); a source that is not shared is a hospital's own table,
never partitioned, only split into training and validation rows.

A source that needs more than its argument (the sql source's query) names its *options*: keys
of the settings schema (node.toml's [data], the simulator's SimConfig) that `source_options`
carries to its loader in `Request.options`, as text, only when set.

A tabular source (csv, parquet, sql) also has `read`: its raw rows (`RawRows`), which its `load`
converts (`_columns.to_table`) and `p2pfl plan draft` inspects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.schema import Column, FeatureSchema, numeric_columns
from p2pfl.registry import Param, Registry


@dataclass(frozen=True)
class Request:
    """What a loader is asked for: the spec, its argument and the caller's options."""

    spec: str
    argument: str
    seed: int = 0
    label_column: str = "label"
    site_column: str | None = None
    nodes: int | None = None
    classes: list[str] | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # the source's options that are set
    schema: FeatureSchema | None = None  # the plan's feature columns; None: inferred

    def option(self, key: str) -> str:
        """The option `key`, "" when it is not set."""
        return self.options.get(key, "")


RowName = Callable[[int], str]  # a row's number -> where it is, for messages ("h.csv:3")


@dataclass(frozen=True)
class RawRows:
    """A tabular source's rows as read, before any conversion: the column names and each row
    with its number in the source's own terms (a CSV's file line, a 1-based data row)."""

    where: str  # the source in messages (a file, a URL without password)
    header: Sequence[str]
    rows: list[tuple[int, Sequence[object]]]
    row_name: RowName  # names row n in messages


@dataclass(frozen=True)
class Table:
    """A source's raw arrays, before the train/test split: float64 features (a numeric value or a
    category's index; NaN for a missing cell), int64 labels."""

    name: str
    x: np.ndarray
    y: np.ndarray
    features: list[str]  # the column names, in the order of x's columns
    site: np.ndarray | None = None  # site of each row, when the data has one
    n_classes: int | None = None  # fixed by the caller (a csv's classes); else max label + 1
    columns: tuple[Column, ...] = ()  # the kind of each column; () means all numeric
    dropped: int = 0  # rows left out for a missing cell (features.missing = drop_row)

    def __post_init__(self) -> None:
        if not self.columns:
            object.__setattr__(self, "columns", numeric_columns(self.features))


@dataclass(frozen=True)
class DataSource:
    """One data source of the registry."""

    name: str
    summary: str
    shared: bool  # every member loads the same table and takes a partition of it
    load: Callable[[Request], Table]
    params: tuple[Param, ...] = ()
    argument: str = ""  # what may follow `name:` ("PATH", "k=v,..."); "" when nothing may
    required: bool = False  # the argument must be given
    path: bool = False  # the argument is a file path; a relative one is relative to a base folder
    row_shape: tuple[int, ...] | None = None  # shape of one row as the model sees it (images)
    options: tuple[str, ...] = ()  # settings keys the loader reads from Request.options
    # the argument with a relative path inside it taken relative to a folder (an sqlite URL's file)
    relocate: Callable[[str, Path], str] | None = None
    read: Callable[[Request], RawRows] | None = None  # a tabular source's raw rows; load converts them

    @property
    def usage(self) -> str:
        """How a spec names this source, for help texts: `csv:PATH`, `synthetic[:k=v,...]`."""
        if not self.argument:
            return self.name
        return f"{self.name}:{self.argument}" if self.required else f"{self.name}[:{self.argument}]"

    def input_shape(self, n_features: int) -> tuple[int, ...]:
        """Shape of one input row: the source's image shape, else (n_features,)."""
        return self.row_shape if self.row_shape is not None else (n_features,)

    def resolve(self, argument: str, base: Path) -> str:
        """The argument with a relative path taken relative to `base`; others unchanged."""
        if self.relocate is not None:
            return self.relocate(argument, base)
        if not self.path or Path(argument).is_absolute():
            return argument
        return (base / argument).as_posix()


SOURCES: Registry[DataSource] = Registry("data source", "p2pfl.learning.sources", LearningSettingError)


def source_of(spec: str) -> tuple[DataSource, str]:
    """The source a spec names and its argument (all of the text after the first colon)."""
    name, colon, argument = spec.partition(":")
    source = SOURCES.get(name)
    if colon and not source.argument:
        raise LearningSettingError(f"data source {spec!r}: {source.name} takes no argument")
    if source.required and not argument.strip():
        raise LearningSettingError(f"data source {spec!r} needs an argument: {source.usage}")
    return source, argument


def shared_part(spec: str) -> str:
    """What of a source spec every member must hold alike: all of a shared source's spec,
    only the name of a hospital's own table (its path is each hospital's own)."""
    source, _ = source_of(spec)
    return spec if source.shared else source.name


def resolve_spec(spec: str, base: Path) -> str:
    """The spec with a relative path argument taken relative to `base`."""
    source, argument = source_of(spec)
    resolved = source.resolve(argument, base)
    return spec if resolved == argument else f"{source.name}:{resolved}"


def source_options(spec: str, settings: object) -> dict[str, str]:
    """The options of the source `spec` names that `settings` (a DataSection, a SimConfig: any
    object with those attributes) sets, as text."""
    source, _ = source_of(spec)
    values = {key: getattr(settings, key, None) for key in source.options}
    return {key: str(value) for key, value in values.items() if value not in (None, "")}


def usages() -> str:
    """'breast_cancer, csv:PATH, ...' for help texts."""
    return ", ".join(source.usage for source in SOURCES)


FILE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}  # a bare path's source


def table_rows(data: str, base: Path) -> RawRows:
    """The raw rows of a table: `csv:PATH`, `parquet:PATH` (any source that reads rows), or a
    bare PATH ending .csv / .parquet; a relative path is taken against `base`."""
    name, colon, _ = data.partition(":")
    if not colon or name not in SOURCES:
        kind = FILE_SUFFIXES.get(Path(data).suffix.lower())
        if kind is None:
            raise LearningSettingError(f"{data}: name the table as csv:PATH or parquet:PATH (or a "
                                       f"file ending {', '.join(FILE_SUFFIXES)})")
        data = f"{kind}:{data}"
    spec = resolve_spec(data, base)
    source, argument = source_of(spec)
    if source.read is None:
        raise LearningSettingError(f"{data}: a {source.name} source has no table of rows "
                                   "(give a csv or parquet file)")
    return source.read(Request(spec, argument))
