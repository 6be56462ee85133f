"""Star: node 0 linked to every other node."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology

COMPONENT = StaticTopology("star", "node 0 linked to every other node",
                           lambda n, p, seed: nx.star_graph(n - 1))
