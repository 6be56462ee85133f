"""Datasets: a data source's table split (stratified) into train and test, standardised.

The sources (bundled tables, a seeded synthetic task, CSV and Parquet files, SQL databases) are the modules of
`p2pfl.learning.sources`; this module turns any of them into a `Dataset`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from p2pfl.learning.sources import Request, Table, source_of
from p2pfl.learning.sources.csv import read_csv
from p2pfl.learning.sources.synthetic import synthetic

__all__ = ["Dataset", "load_dataset", "read_csv", "synthetic"]


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
    test_fraction: float = 0.2,
    label_column: str = "label",
    site_column: str | None = None,
    nodes: int | None = None,
    classes: list[str] | None = None,
    options: Mapping[str, str] | None = None,
) -> Dataset:
    """Load the data source `spec` names (`breast_cancer`, `synthetic:k=v,...`, `csv:PATH`, ...).

    For a CSV, `classes` fixes the label order (every hospital must map labels alike);
    without it the labels found are sorted. `nodes` is the default number of synthetic sites.
    `options` are the source's options that are set (`source_options`: the sql source's query).
    """
    source, argument = source_of(spec)
    table = source.load(Request(spec, argument, seed, label_column, site_column, nodes, classes,
                                 dict(options or {})))
    return _split(table, seed, test_fraction, source.input_shape(table.x.shape[1]))


def _split(table: Table, seed: int, test_fraction: float, input_shape: tuple[int, ...]) -> Dataset:
    """Stratified train/test split (when every class has two rows), features standardised by the
    training rows' mean and standard deviation."""
    x, y, site = table.x, table.y, table.site
    n_classes = table.n_classes or int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes)
    stratify = y if counts.min() >= 2 else None
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    tr, te = np.sort(tr), np.sort(te)
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0)
    std[std < 1e-12] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    return Dataset(
        name=table.name,
        x_train=xs[tr],
        y_train=y[tr],
        x_test=xs[te],
        y_test=y[te],
        n_classes=n_classes,
        feature_names=table.features,
        site_train=None if site is None else site[tr],
        input_shape=input_shape,
    )
