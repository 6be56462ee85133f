"""Partitions by name: one module per way of splitting a training set, each defining `COMPONENT`.

`p2pfl.learning.partition.partition` is the front door: it checks the sizes, draws the
generator from the seed and hands the rows to the member the spec names (`iid`,
`dirichlet:ALPHA`, ...). Every member is deterministic given that generator, so every node that
knows (spec, seed) computes the same split. Adding a partition is adding one module here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from p2pfl.learning.errors import LearningSettingError
from p2pfl.registry import Param, Registry

if TYPE_CHECKING:
    from p2pfl.learning.partition import Partition


@dataclass(frozen=True)
class Rows:
    """What a partition splits: labels, node count, the seeded generator, sites and feature count."""

    y: np.ndarray
    nodes: int
    rng: np.random.Generator
    site: np.ndarray | None = None
    n_features: int = 0


@dataclass(frozen=True)
class PartitionKind:
    """One way to split rows among nodes; `argument` names the positive number after 'name:'."""

    name: str
    summary: str
    split: Callable[[Rows, float | None], Partition]  # (rows, the argument's value or None)
    params: tuple[Param, ...] = ()
    paper: str = ""
    argument: str = ""  # "ALPHA": the spec is name:ALPHA; empty: the name alone


PARTITIONS: Registry[PartitionKind] = Registry("partition", __name__, LearningSettingError)


def usages() -> str:
    """'dirichlet:ALPHA, iid, ...' for help texts."""
    return ", ".join(k.name + (f":{k.argument}" if k.argument else "") for k in PARTITIONS)


def even(perm: np.ndarray, nodes: int) -> list[np.ndarray]:
    """`perm` cut into `nodes` near-equal parts, each sorted."""
    return [np.sort(p) for p in np.array_split(perm, nodes)]


def fill_empty(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Give each empty node one row taken from the currently largest node (deterministic)."""
    for k in range(len(parts)):
        if len(parts[k]) == 0:
            big = max(range(len(parts)), key=lambda j: len(parts[j]))
            parts[k], parts[big] = parts[big][-1:], parts[big][:-1]
    return parts
