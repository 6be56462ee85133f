"""Datasets: a data source's table split (stratified) into train and test, preprocessed.

The sources (bundled tables, a seeded synthetic task, CSV and Parquet files, SQL databases) are the modules of
`p2pfl.learning.sources`; this module turns any of them into a `Dataset`: the statistics of the
training rows fix a `Preprocessor` (numeric columns standardised, categorical ones one-hot).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.model_selection import train_test_split

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.preprocess import Preprocessor, Statistics
from p2pfl.learning.schema import FeatureSchema
from p2pfl.learning.sources import DataSource, Request, Table, source_of
from p2pfl.learning.sources.csv import read_csv
from p2pfl.learning.sources.synthetic import synthetic

__all__ = ["Dataset", "load_dataset", "read_csv", "synthetic"]

TEST_FRACTION = 0.2  # the rows held out for validation


@dataclass
class Dataset:
    """A train/test split of a classification table. Arrays are float32 / int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    feature_names: list[str]
    site_train: np.ndarray | None = None  # site label per training row, when the data has one
    input_shape: tuple[int, ...] = ()  # shape of one example for the model; () means (n_features,)
    preprocessor: Preprocessor | None = None  # raw rows -> these arrays
    statistics: Statistics | None = None  # what fixed the preprocessor (the training rows', or agreed)

    def __post_init__(self) -> None:
        # The arrays stay flat [rows, features]; consumers reshape to [rows, *input_shape].
        self.input_shape = tuple(self.input_shape) or (self.n_features,)
        if math.prod(self.input_shape) != self.n_features:
            raise ValueError(f"input shape {self.input_shape} does not hold {self.n_features} features")

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


def load_dataset(
    spec: str,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    label_column: str = "label",
    site_column: str | None = None,
    nodes: int | None = None,
    classes: list[str] | None = None,
    options: Mapping[str, str] | None = None,
    schema: FeatureSchema | None = None,
) -> Dataset:
    """Load the data source `spec` names (`breast_cancer`, `synthetic:k=v,...`, `csv:PATH`, ...).

    For a CSV, `classes` fixes the label order (every hospital must map labels alike);
    without it the labels found are sorted. `nodes` is the default number of synthetic sites.
    `options` are the source's options that are set (`source_options`: the sql source's query).
    `schema` is the plan's feature schema (None: every other column, kinds inferred).
    """
    source, table = load_table(spec, seed, label_column, site_column, nodes, classes, options, schema)
    train, test = split_rows(table, seed, test_fraction)
    return make_dataset(source, table, train, test, Statistics.of(table.x, table.columns, rows=train))


def load_table(
    spec: str, seed: int = 0, label_column: str = "label", site_column: str | None = None,
    nodes: int | None = None, classes: list[str] | None = None,
    options: Mapping[str, str] | None = None, schema: FeatureSchema | None = None,
) -> tuple[DataSource, Table]:
    """The source `spec` names and its table (raw: numbers, category indices, NaN)."""
    source, argument = source_of(spec)
    if schema is not None and schema.fixed and source.read is None:
        raise LearningSettingError(f"data source {source.name!r} has fixed columns: features.columns, "
                                   "features.ignore and features.rename are for tables (csv, parquet, sql)")
    table = source.load(Request(spec, argument, seed, label_column, site_column, nodes, classes,
                                dict(options or {}), schema))
    return source, table


def split_rows(table: Table, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and test row indices: stratified when every class has two rows."""
    y = table.y
    counts = np.bincount(y, minlength=n_classes_of(table))
    stratify = y if counts.min() >= 2 else None
    with sklearn.config_context(skip_parameter_validation=True):  # our own arguments: half its cost
        tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed,
                                  stratify=stratify)
    return np.sort(tr), np.sort(te)


def n_classes_of(table: Table) -> int:
    """The table's class count: the caller's (fixed classes), else max label + 1."""
    return table.n_classes or int(table.y.max()) + 1


def make_dataset(source: DataSource, table: Table, train: np.ndarray, test: np.ndarray,
                 statistics: Statistics) -> Dataset:
    """The dataset of these rows, preprocessed as `statistics` fix (the training rows' own, or
    statistics every member agreed on)."""
    pre = Preprocessor(table.columns, statistics)
    return Dataset(
        name=table.name,
        x_train=pre.transform(table.x, rows=train),
        y_train=table.y[train],
        x_test=pre.transform(table.x, rows=test),
        y_test=table.y[test],
        n_classes=n_classes_of(table),
        feature_names=pre.feature_names,
        site_train=None if table.site is None else table.site[train],
        input_shape=source.input_shape(pre.n_features),
        preprocessor=pre,
        statistics=statistics,
    )
