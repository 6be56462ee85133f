"""A hospital's own training and validation data, for the node daemon."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from p2pfl.learning.datasets import load_dataset
from p2pfl.learning.partition import partition
from p2pfl.learning.sources import source_of


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

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example: (features,) for a table, (channels, height, width) for images."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return math.prod(self.input_shape)


def load_local(
    source: str,
    index: int,
    members: int,
    label_column: str = "label",
    classes: list[str] | None = None,
    partition_spec: str = "iid",
    seed: int = 0,
    options: Mapping[str, str] | None = None,
) -> LocalData:
    """Load this node's data.

    `options` are the source's options that are set (the sql source's query, password_env).
    A source that is not shared (`csv:PATH`, `sql:URL`, ...) is the hospital's own table: its rows are split
    80/20 into training and validation. A shared source (bundled or synthetic data) is a trial:
    every member loads the same table and the same partition (same seed), keeps shard `index`
    for training and validates on the shared test split.
    """
    ds = load_dataset(source, seed=seed, label_column=label_column, nodes=members,
                      classes=classes or None, options=options)
    if not source_of(source)[0].shared:
        x_tr, y_tr = ds.x_train, ds.y_train
        sizes, row = np.array([len(y_tr)]), 0
    else:
        part = partition(partition_spec, ds.y_train, members, seed=seed, site=ds.site_train,
                         n_features=ds.n_features)
        rows = part.indices[index]
        x_tr, y_tr = ds.x_train[rows], ds.y_train[rows]
        if part.feature_shift is not None:
            x_tr = x_tr + part.feature_shift[index]
        sizes, row = part.sizes, index
    shape = ds.input_shape  # the arrays are flat; models get [rows, *shape]
    return LocalData(
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)).reshape(-1, *shape),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_val=torch.from_numpy(ds.x_test).reshape(-1, *shape),
        y_val=torch.from_numpy(ds.y_test),
        n_classes=ds.n_classes,
        plan_sizes=sizes,
        plan_row=row,
    )
