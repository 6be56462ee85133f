"""Static exponential graph: node i linked to i + 2^k for every k (degree about 2 log2 n)."""

from p2pfl.gossip.topologies import StaticTopology, log2_ceil, ring_offsets

COMPONENT = StaticTopology(
    "exponential", "node i linked to i + 1, 2, 4, ... (mod n)",
    lambda n, p, seed: ring_offsets(n, [2**k for k in range(log2_ceil(n))]),
    paper="Ying, Yuan, Chen, Hu, Pan and Yin, Exponential graph is provably efficient for "
          "decentralized deep training, NeurIPS 2021",
)
