"""2-D torus: a rows x (n / rows) grid with wrap-around (degree 4)."""

import math

import networkx as nx

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topologies import StaticTopology, checked
from p2pfl.registry import Param


def _near_square(n: int) -> int:
    rows = int(math.isqrt(n))
    while n % rows:
        rows -= 1
    return rows


def build(n: int, p: dict[str, object], seed: int) -> nx.Graph:
    rows = int(p["rows"]) if p["rows"] is not None else _near_square(n)
    if rows < 1 or n % rows:
        raise GossipSettingError(f"torus: rows={rows} does not divide --nodes {n}")
    grid = nx.grid_2d_graph(rows, n // rows, periodic=(rows > 2, n // rows > 2))
    return nx.convert_node_labels_to_integers(grid, ordering="sorted")


COMPONENT = StaticTopology("torus", "2-D grid with wrap-around, degree 4", checked(build),
                           params=(Param("rows", None, "grid rows (default: nearest to a square)"),))
