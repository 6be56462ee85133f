"""Quantity skew: rows are iid, but node sizes follow Dirichlet(ALPHA) shares."""

from __future__ import annotations

import numpy as np

from p2pfl.learning.partition import Partition
from p2pfl.learning.partitions import PartitionKind, Rows, fill_empty


def _split(rows: Rows, alpha: float | None) -> Partition:
    n, rng = len(rows.y), rows.rng
    props = rng.dirichlet(np.full(rows.nodes, alpha))
    cuts = (np.cumsum(props)[:-1] * n).astype(int)
    return Partition(fill_empty([np.sort(p) for p in np.split(rng.permutation(n), cuts)]))


COMPONENT = PartitionKind("quantity", "size skew: iid rows, node sizes in Dirichlet(ALPHA) shares", _split,
                          argument="ALPHA")
