"""Hypercube: nodes are bit strings, linked when they differ in one bit (n a power of two)."""

import networkx as nx

from p2pfl.gossip.topologies import StaticTopology, power_of_two

COMPONENT = StaticTopology(
    "hypercube", "log2(n)-dimensional hypercube (n a power of two)",
    lambda n, p, seed: nx.convert_node_labels_to_integers(nx.hypercube_graph(power_of_two(n, "hypercube")),
                                                          ordering="sorted"),
)
