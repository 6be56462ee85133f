"""Hypercube: nodes are bit strings, linked when they differ in one bit (n a power of two)."""

import numpy as np

from p2pfl.gossip.topologies import StaticTopology, power_of_two


def build(n: int, p: dict[str, object], seed: int) -> np.ndarray:
    """Node i linked to i XOR 2^k for every bit k (networkx's hypercube, labels sorted)."""
    i = np.arange(n, dtype=np.int64)
    pairs = [np.stack([i, i ^ (1 << k)], axis=1) for k in range(power_of_two(n, "hypercube"))]
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


COMPONENT = StaticTopology("hypercube", "log2(n)-dimensional hypercube (n a power of two)", build)
