"""Ring: every node linked to its two neighbours (degree 2)."""

from p2pfl.gossip.topologies import StaticTopology, ring_offsets

COMPONENT = StaticTopology("ring", "cycle over all nodes, degree 2", lambda n, p, seed: ring_offsets(n, [1]))
