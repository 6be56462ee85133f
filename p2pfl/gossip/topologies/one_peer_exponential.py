"""One-peer exponential graph: in round t node i sends only to i + 2^(t mod ceil(log2 n))."""

import numpy as np

from p2pfl.gossip.topologies import TimeVaryingTopology, log2_ceil


def edges(n: int, p: dict[str, object], seed: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    hop = 2 ** (t % log2_ceil(n))
    src = np.arange(n, dtype=np.int64)
    return src, (src + hop) % n


COMPONENT = TimeVaryingTopology(
    "one_peer_exponential", "one peer per round, i + 2^(t mod log2 n): exact average in log2 n rounds",
    edges, period=lambda n: max(1, log2_ceil(n)),
    paper="Ying, Yuan, Chen, Hu, Pan and Yin, Exponential graph is provably efficient for "
          "decentralized deep training, NeurIPS 2021",
)
