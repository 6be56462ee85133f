"""Complete graph: every node linked to every other (all-reduce in one round)."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology

COMPONENT = StaticTopology("complete", "every node linked to every other",
                           lambda n, p, seed: nx.complete_graph(n))
