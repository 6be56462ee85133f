"""Node-local training data laid out for the engines: all rows in one tensor plus per-node offsets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from p2pfl.learning.datasets import Dataset
from p2pfl.learning.partition import Partition


@dataclass
class NodeData:
    """Training rows of all nodes, node k's rows at offsets[k] : offsets[k] + sizes[k].

    Examples have the dataset's `input_shape`: x is [rows, *input_shape] (images stay images).
    """

    x: torch.Tensor  # [rows, *input_shape] float32
    y: torch.Tensor  # [rows] int64
    offsets: torch.Tensor  # [nodes] int64
    sizes: np.ndarray  # [nodes] int64
    x_test: torch.Tensor  # [test rows, *input_shape]
    y_test: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def nodes(self) -> int:
        return len(self.sizes)

    def node(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of node k (views)."""
        a = int(self.offsets[k])
        b = a + int(self.sizes[k])
        return self.x[a:b], self.y[a:b]

    @classmethod
    def build(cls, ds: Dataset, part: Partition) -> NodeData:
        """Gather each node's rows (applying its feature shift to the flat features) into one
        contiguous tensor, shaped [rows, *ds.input_shape]. Without a shift, rows already in
        node order (a site partition of a synthetic table) are used in place, not copied."""
        order = np.concatenate(part.indices).astype(np.int64)
        if part.feature_shift is not None:
            xs = [ds.x_train[rows] + part.feature_shift[k] for k, rows in enumerate(part.indices)]
            x = np.concatenate(xs).astype(np.float32)
        elif len(order) == len(ds.x_train) and (order == np.arange(len(order))).all():
            x = np.ascontiguousarray(ds.x_train, dtype=np.float32)
        else:
            x = ds.x_train[order].astype(np.float32, copy=False)
        sizes = part.sizes
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return cls(
            x=torch.from_numpy(x).reshape(-1, *ds.input_shape),
            y=torch.from_numpy(ds.y_train[order].astype(np.int64)),
            offsets=torch.from_numpy(offsets),
            sizes=sizes,
            x_test=torch.from_numpy(ds.x_test).reshape(-1, *ds.input_shape),
            y_test=torch.from_numpy(ds.y_test),
            n_classes=ds.n_classes,
        )

    def to(self, device: torch.device | str) -> NodeData:
        """The tensors on `device` (this object itself when they are there already)."""
        if self.x.device == torch.device(device):
            return self
        x, y, offsets, x_test, y_test = (t.to(device) for t in (self.x, self.y, self.offsets, self.x_test,
                                                                 self.y_test))
        return NodeData(x, y, offsets, self.sizes, x_test, y_test, self.n_classes)

    def pooled(self) -> NodeData:
        """All rows as a single node (for the centralized baseline)."""
        return NodeData(
            self.x, self.y, torch.zeros(1, dtype=torch.int64), np.array([len(self.y)]),
            self.x_test, self.y_test, self.n_classes,
        )
