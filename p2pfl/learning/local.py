"""A hospital's own training and validation data, for the node daemon.

Two phases, so that members can agree on standardisation statistics first: `load_local_table`
reads and splits the rows and gives their statistics; `LocalTable.prepare(statistics)` (the
agreed ones) preprocesses them into tensors. `load_local` is both with the node's own statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from p2pfl.learning.datasets import TEST_FRACTION, load_table, make_dataset, split_rows
from p2pfl.learning.partition import partition
from p2pfl.learning.preprocess import Preprocessor, Statistics
from p2pfl.learning.schema import FeatureSchema
from p2pfl.learning.sources import DataSource, Table


@dataclass
class LocalData:
    """This node's training rows and its validation rows (tensors of shape [rows, *input_shape]).

    `plan_sizes` and `plan_row` place this node in a batch plan: for a shard of a shared
    dataset, the sizes of every shard and this node's index, so a node draws exactly the batches
    the simulator draws for it; for a hospital's own table, just its own size.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    plan_sizes: np.ndarray
    plan_row: int = 0
    preprocessor: Preprocessor | None = None  # raw rows -> these tensors (for the model card)
    statistics: Statistics | None = None  # what fixed the preprocessor

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example: (features,) for a table, (channels, height, width) for images."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return math.prod(self.input_shape)


@dataclass
class LocalTable:
    """This node's table, read and split but not yet preprocessed."""

    source: DataSource
    table: Table
    train: np.ndarray  # training row indices (of the whole shared table, for a shared source)
    test: np.ndarray
    statistics: Statistics  # of the training rows (a shared source: alike at every member)
    index: int
    members: int
    partition_spec: str
    seed: int

    def prepare(self, statistics: Statistics) -> LocalData:
        """This node's tensors, preprocessed as `statistics` (the agreed ones) fix.

        A table that is not shared keeps all its training rows; a shared one (a trial) is
        partitioned like the simulator partitions it (same seed) and this node keeps shard
        `index`, plus the partition's feature shift, added after preprocessing."""
        ds = make_dataset(self.source, self.table, self.train, self.test, statistics)
        if not self.source.shared:
            x_tr, y_tr = ds.x_train, ds.y_train
            sizes, row = np.array([len(y_tr)]), 0
        else:
            part = partition(self.partition_spec, ds.y_train, self.members, seed=self.seed,
                             site=ds.site_train, n_features=ds.n_features)
            rows = part.indices[self.index]
            x_tr, y_tr = ds.x_train[rows], ds.y_train[rows]
            if part.feature_shift is not None:
                x_tr = x_tr + part.feature_shift[self.index]
            sizes, row = part.sizes, self.index
        shape = ds.input_shape  # the arrays are flat; models get [rows, *shape]
        return LocalData(
            x_train=torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)).reshape(-1, *shape),
            y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
            x_val=torch.from_numpy(ds.x_test).reshape(-1, *shape),
            y_val=torch.from_numpy(ds.y_test),
            n_classes=ds.n_classes,
            plan_sizes=sizes,
            plan_row=row,
            preprocessor=ds.preprocessor,
            statistics=statistics,
        )


def load_local_table(
    source: str,
    index: int,
    members: int,
    label_column: str = "label",
    classes: list[str] | None = None,
    partition_spec: str = "iid",
    seed: int = 0,
    options: Mapping[str, str] | None = None,
    schema: FeatureSchema | None = None,
) -> LocalTable:
    """Read and split this node's data (see `load_local`); its statistics are the training rows'."""
    src, table = load_table(source, seed, label_column, None, members, classes or None, options, schema)
    train, test = split_rows(table, seed, TEST_FRACTION)
    return LocalTable(src, table, train, test, Statistics.of(table.x, table.columns, rows=train),
                      index, members, partition_spec, seed)


def load_local(
    source: str,
    index: int,
    members: int,
    label_column: str = "label",
    classes: list[str] | None = None,
    partition_spec: str = "iid",
    seed: int = 0,
    options: Mapping[str, str] | None = None,
    schema: FeatureSchema | None = None,
) -> LocalData:
    """Load this node's data, preprocessed with its own statistics.

    `options` are the source's options that are set (the sql source's query, password_env).
    A source that is not shared (`csv:PATH`, `sql:URL`, ...) is the hospital's own table: its rows are split
    80/20 into training and validation. A shared source (bundled or synthetic data) is a trial:
    every member loads the same table and the same partition (same seed), keeps shard `index`
    for training and validates on the shared test split.
    """
    local = load_local_table(source, index, members, label_column, classes, partition_spec, seed,
                             options, schema)
    return local.prepare(local.statistics)
