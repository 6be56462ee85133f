"""Dirichlet label skew: each class's rows are split among the nodes in Dirichlet(ALPHA) shares.

Hsu, Qi and Brown, "Measuring the effects of non-identical data distribution for federated
visual classification" (2019). Small ALPHA: each node holds few classes; large: close to iid.
"""

from __future__ import annotations

import numpy as np

from p2pfl.learning.partition import Partition
from p2pfl.learning.partitions import PartitionKind, Rows, fill_empty


def _split(rows: Rows, alpha: float | None) -> Partition:
    y, nodes, rng = rows.y, rows.nodes, rows.rng
    n_classes = int(y.max()) + 1
    parts: list[list[np.ndarray]] = [[] for _ in range(nodes)]
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        props = rng.dirichlet(np.full(nodes, alpha))
        cuts = (np.cumsum(props)[:-1] * len(members)).astype(int)
        for k, chunk in enumerate(np.split(members, cuts)):
            parts[k].append(chunk)
    return Partition(fill_empty([np.sort(np.concatenate(p)) for p in parts]))


COMPONENT = PartitionKind(
    "dirichlet", "label skew: each class split among the nodes in Dirichlet(ALPHA) shares", _split,
    paper="Hsu, Qi and Brown, Measuring the effects of non-identical data distribution for "
    "federated visual classification, 2019", argument="ALPHA")
