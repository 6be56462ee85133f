"""Erdos-Renyi G(n, p): each pair linked independently with probability p."""

import math

import networkx as nx

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.topologies import StaticTopology, checked
from p2pfl.registry import Param


def build(n: int, p: dict[str, object], seed: int) -> nx.Graph:
    prob = float(p["p"]) if p["p"] is not None else min(1.0, 2 * math.log(max(n, 2)) / n)
    if not 0 <= prob <= 1:
        raise GossipSettingError(f"erdos_renyi: p must be in [0, 1], got {prob}")
    p["p"] = prob
    return nx.fast_gnp_random_graph(n, prob, seed=seed)


COMPONENT = StaticTopology(
    "erdos_renyi", "random graph, each pair linked with probability p", checked(build),
    params=(Param("p", None, "link probability (default: 2 ln(n) / n, connected with high probability)"),),
    paper="Erdos and Renyi, On random graphs I, 1959",
)
