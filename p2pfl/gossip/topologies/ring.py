"""Ring: every node linked to its two neighbours (degree 2)."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology

COMPONENT = StaticTopology("ring", "cycle over all nodes, degree 2", lambda n, p, seed: nx.cycle_graph(n))
