"""Random d-regular graph: every node has exactly d neighbours."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology, checked
from p2pfl.registry import Param

COMPONENT = StaticTopology(
    "regular", "random graph where every node has degree d",
    checked(lambda n, p, seed: nx.random_regular_graph(int(p["d"]), n, seed=seed)),
    params=(Param("d", 4, "degree"),),
)
