"""scikit-learn's bundled tables (files installed with it: no download)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from p2pfl.learning.sources import Request, Table


def bundled(name: str) -> Table:
    """The sklearn table `load_<name>()` with its feature names (x0, x1, ... when it has none)."""
    x, y, names = _read(name)
    return Table(name, x.copy(), y.copy(), list(names))


@functools.cache
def _read(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The file is parsed once per process (a simulation loads it every run)."""
    from sklearn import datasets as skd

    bunch = getattr(skd, f"load_{name}")()
    names = [str(f) for f in getattr(bunch, "feature_names", [])] or [
        f"x{i}" for i in range(bunch.data.shape[1])
    ]
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64), tuple(names)


def loader(name: str) -> Callable[[Request], Table]:
    """A loader of the bundled table `name` (it takes no argument)."""
    def load(_request: Request) -> Table:
        return bundled(name)
    return load
