"""Split a training set among nodes: the front door of the partitions in p2pfl.learning.partitions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.partitions import PARTITIONS, Rows, usages


@dataclass
class Partition:
    """Row indices of each node's training data, and an optional per-node feature offset."""

    indices: list[np.ndarray]
    feature_shift: np.ndarray | None = None  # [nodes, features], added to that node's rows

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.indices], dtype=np.int64)


def partition(
    spec: str,
    y: np.ndarray,
    nodes: int,
    seed: int = 0,
    site: np.ndarray | None = None,
    n_features: int = 0,
) -> Partition:
    """Partition len(y) rows among `nodes` nodes by `spec` ('iid', 'dirichlet:0.5', ...);
    every node gets at least one row."""
    if nodes < 1:
        raise LearningSettingError(f"--nodes must be at least 1, got {nodes}")
    if len(y) < nodes:
        raise LearningSettingError(f"the training set has {len(y)} samples, fewer than the {nodes} nodes")
    rng = np.random.default_rng([seed, 0x9A27])
    name, _, arg = spec.partition(":")
    kind = PARTITIONS.get(name) if name in PARTITIONS else None
    if kind is None or (arg and not kind.argument):
        raise LearningSettingError(f"unknown partition {spec!r}; choose one of {usages()}")
    value = _positive(spec, arg) if kind.argument else None
    return kind.split(Rows(y, nodes, rng, site, n_features), value)


def _positive(spec: str, arg: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise LearningSettingError(f"partition {spec!r}: the value after ':' must be a number") from None
    if not value > 0:
        raise LearningSettingError(f"partition {spec!r}: the value must be positive")
    return value
