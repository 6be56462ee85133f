"""2-D torus: a rows x (n / rows) grid with wrap-around (degree 4)."""

import math

import numpy as np

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topologies import StaticTopology, checked
from p2pfl.registry import Param


def _near_square(n: int) -> int:
    rows = int(math.isqrt(n))
    while n % rows:
        rows -= 1
    return rows


def build(n: int, p: dict[str, object], seed: int) -> np.ndarray:
    """Node r * cols + c linked to the next row and column, wrapping around along a side longer
    than 2 (networkx's periodic grid_2d_graph, labels sorted)."""
    rows = int(p["rows"]) if p["rows"] is not None else _near_square(n)
    if rows < 1 or n % rows:
        raise GossipSettingError(f"torus: rows={rows} does not divide --nodes {n}")
    cols = n // rows
    r, c = np.divmod(np.arange(n, dtype=np.int64), cols)
    pairs = []
    for size, at, step in ((rows, r, cols), (cols, c, 1)):
        linked = at + 1 < size if size <= 2 else np.ones(n, dtype=bool)
        nxt = np.where(at + 1 < size, np.arange(n) + step, np.arange(n) - (size - 1) * step)
        pairs.append(np.stack([np.arange(n), nxt], axis=1)[linked])
    return np.concatenate(pairs)


COMPONENT = StaticTopology("torus", "2-D grid with wrap-around, degree 4", checked(build),
                           params=(Param("rows", None, "grid rows (default: nearest to a square)"),))
