"""Watts-Strogatz small world: a ring lattice with randomly rewired links."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology, checked
from p2pfl.registry import Param

COMPONENT = StaticTopology(
    "watts_strogatz", "small-world ring lattice with rewired links",
    checked(lambda n, p, seed: nx.watts_strogatz_graph(n, int(p["k"]), float(p["p"]), seed=seed)),
    params=(Param("k", 4, "neighbours in the lattice"), Param("p", 0.1, "rewiring probability")),
    paper="Watts and Strogatz, Collective dynamics of small-world networks, Nature 1998",
)
