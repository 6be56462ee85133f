"""Barabasi-Albert preferential attachment: a few hubs, many low-degree nodes."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology, checked
from p2pfl.registry import Param

COMPONENT = StaticTopology(
    "barabasi_albert", "scale-free graph by preferential attachment",
    checked(lambda n, p, seed: nx.barabasi_albert_graph(n, int(p["m"]), seed=seed)),
    params=(Param("m", 2, "links of each new node"),),
    paper="Barabasi and Albert, Emergence of scaling in random networks, Science 1999",
)
