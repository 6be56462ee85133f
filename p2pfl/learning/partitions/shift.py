"""Feature shift: an iid split, and each node adds its own offset N(0, SIGMA^2) to every feature."""

from __future__ import annotations

import numpy as np

from p2pfl.learning.partition import Partition
from p2pfl.learning.partitions import PartitionKind, Rows, even


def _split(rows: Rows, sigma: float | None) -> Partition:
    parts = even(rows.rng.permutation(len(rows.y)), rows.nodes)
    shift = rows.rng.normal(0.0, sigma, size=(rows.nodes, rows.n_features)).astype(np.float32)
    return Partition(parts, shift)


COMPONENT = PartitionKind("shift", "feature skew: iid rows, a per-node feature offset N(0, SIGMA^2)", _split,
                          argument="SIGMA")
