"""Split a training set among nodes: iid, label skew, size skew, by site, feature skew.

Dirichlet label skew follows Hsu, Qi and Brown, "Measuring the effects of non-identical data
distribution for federated visual classification" (2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2pfl.learning.errors import LearningSettingError

KINDS = ("iid", "dirichlet:ALPHA", "quantity:ALPHA", "site", "shift:SIGMA")


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
    """Partition len(y) rows among `nodes` nodes; every node gets at least one row."""
    if nodes < 1:
        raise LearningSettingError(f"--nodes must be at least 1, got {nodes}")
    if len(y) < nodes:
        raise LearningSettingError(f"the training set has {len(y)} samples, fewer than the {nodes} nodes")
    rng = np.random.default_rng([seed, 0x9A27])
    kind, _, arg = spec.partition(":")
    if kind == "iid" and not arg:
        return Partition(_even(rng.permutation(len(y)), nodes))
    if kind == "site" and not arg:
        return Partition(_by_site(site, nodes))
    if kind in ("dirichlet", "quantity", "shift"):
        value = _positive(spec, arg)
        if kind == "dirichlet":
            return Partition(_dirichlet_labels(y, nodes, value, rng))
        if kind == "quantity":
            return Partition(_dirichlet_sizes(len(y), nodes, value, rng))
        parts = _even(rng.permutation(len(y)), nodes)
        return Partition(parts, rng.normal(0.0, value, size=(nodes, n_features)).astype(np.float32))
    raise LearningSettingError(f"unknown partition {spec!r}; choose one of {', '.join(KINDS)}")


def _positive(spec: str, arg: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise LearningSettingError(f"partition {spec!r}: the value after ':' must be a number") from None
    if not value > 0:
        raise LearningSettingError(f"partition {spec!r}: the value must be positive")
    return value


def _even(perm: np.ndarray, nodes: int) -> list[np.ndarray]:
    return [np.sort(p) for p in np.array_split(perm, nodes)]


def _by_site(site: np.ndarray | None, nodes: int) -> list[np.ndarray]:
    if site is None:
        raise LearningSettingError(
            "partition 'site' needs a dataset with a site column (synthetic, or csv with --site-column)"
        )
    sites = np.unique(site)
    if len(sites) < nodes:
        raise LearningSettingError(f"partition 'site': the data has {len(sites)} sites, fewer than "
                                   f"the {nodes} nodes")
    # Sites are dealt to nodes in order: node k holds sites k, k + nodes, ...
    node_of_row = np.searchsorted(sites, site) % nodes
    order = np.argsort(node_of_row, kind="stable")
    return np.split(order, np.cumsum(np.bincount(node_of_row, minlength=nodes))[:-1])


def _dirichlet_labels(y: np.ndarray, nodes: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """For each class, split its rows among nodes in Dirichlet(alpha) proportions."""
    n_classes = int(y.max()) + 1
    parts: list[list[np.ndarray]] = [[] for _ in range(nodes)]
    for c in range(n_classes):
        rows = rng.permutation(np.flatnonzero(y == c))
        props = rng.dirichlet(np.full(nodes, alpha))
        cuts = (np.cumsum(props)[:-1] * len(rows)).astype(int)
        for k, chunk in enumerate(np.split(rows, cuts)):
            parts[k].append(chunk)
    return _fill_empty([np.sort(np.concatenate(p)) for p in parts])


def _dirichlet_sizes(n: int, nodes: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Rows are iid, but node sizes follow Dirichlet(alpha) proportions."""
    props = rng.dirichlet(np.full(nodes, alpha))
    cuts = (np.cumsum(props)[:-1] * n).astype(int)
    return _fill_empty([np.sort(p) for p in np.split(rng.permutation(n), cuts)])


def _fill_empty(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Give each empty node one row taken from the currently largest node (deterministic)."""
    for k in range(len(parts)):
        if len(parts[k]) == 0:
            big = max(range(len(parts)), key=lambda j: len(parts[j]))
            parts[k], parts[big] = parts[big][-1:], parts[big][:-1]
    return parts
