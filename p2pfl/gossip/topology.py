"""Communication topologies by name, static and time-varying.

Every node that knows (name, params, n, seed) builds the same graph, and for time-varying
topologies the same graph of round t, with no communication: the node protocol relies on it.
Nodes are labelled 0..n-1. Directed edges (src, dst) mean "src sends its model to dst".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from p2pfl.gossip import mixing, spectral
from p2pfl.gossip.errors import GossipSettingError
from p2pfl.gossip.spec import key_values
from p2pfl.gossip.topologies import Kind, StaticTopology, TimeVaryingTopology, kind_of


def parse_params(items: list[str] | dict[str, object] | None) -> dict[str, object]:
    """`["p=0.1", "k=4"]` (or a dict) -> {"p": 0.1, "k": 4}, with ints and floats converted."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    spec = ",".join(str(item) for item in items)
    return {key: _number(value) for key, value in key_values(spec, spec).items()}


def _number(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass
class Topology:
    """A named topology over n nodes. Build with `build_topology`.

    A static topology holds its undirected edges as an [E, 2] array (`undirected`); a
    time-varying one (`undirected` None) draws the directed edges of each round.
    """

    name: str
    n: int
    params: dict[str, object]
    seed: int = 0
    scheme: str = "metropolis_hastings"
    undirected: np.ndarray | None = None
    kind: Kind | None = None
    _cache: dict[int, sp.csr_matrix] = field(default_factory=dict, repr=False)
    _graph: nx.Graph | None = field(default=None, repr=False)

    @property
    def time_varying(self) -> bool:
        return self.undirected is None

    @property
    def graph(self) -> nx.Graph | None:
        """The static graph as networkx (None for time-varying topologies; built on first use
        when the topology gave arrays)."""
        if self.undirected is None:
            return None
        if self._graph is None:
            self._graph = nx.Graph()
            self._graph.add_nodes_from(range(self.n))
            self._graph.add_edges_from(self.undirected.tolist())
        return self._graph

    def edges(self, t: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Directed edges (src, dst) of round t."""
        if not self.time_varying:
            return self._static_directed
        assert isinstance(self.kind, TimeVaryingTopology)
        return self.kind.edges(self.n, self.params, self.seed, t)

    def out_neighbors(self, i: int, t: int = 0) -> list[int]:
        """Nodes that node i sends to in round t."""
        src, dst = self.edges(t)
        return sorted(int(d) for d in dst[src == i])

    def in_neighbors(self, i: int, t: int = 0) -> list[int]:
        """Nodes that node i receives from in round t."""
        src, dst = self.edges(t)
        return sorted(int(s) for s in src[dst == i])

    def mixing(self, t: int = 0) -> sp.csr_matrix:
        """The mixing matrix of round t (cached for static topologies)."""
        if self.undirected is not None:
            if 0 not in self._cache:
                self._cache[0] = mixing.mixing_matrix(self.n, self.undirected, self.scheme)
            return self._cache[0]
        return mixing.receiver_average(self.n, *self.edges(t))

    def spectral_gap(self, samples: int = 32) -> float:
        """Spectral gap of the mixing matrix; for time-varying topologies the expected rate."""
        return self.gap(samples).value

    def gap(self, samples: int = 32) -> spectral.Gap:
        """`spectral_gap` with how it was found (exact, or a Lanczos estimate and its state)."""
        if not self.time_varying:
            w = self.mixing(0)
            if self.scheme == "uniform" and not _is_symmetric(w):
                return spectral.rate_gap([w])
            return spectral.symmetric_gap(w)
        assert isinstance(self.kind, TimeVaryingTopology)
        if self.kind.period is not None:
            rounds = range(self.kind.period(self.n))
            return spectral.rate_gap([self.mixing(t) for t in rounds], product=True)
        return spectral.rate_gap([self.mixing(t) for t in range(samples)])

    def degree_stats(self) -> tuple[int, float, int]:
        """Min, mean, max out-degree (of round 0 for time-varying topologies)."""
        src, _ = self.edges(0)
        deg = np.bincount(src, minlength=self.n)
        return int(deg.min()), float(deg.mean()), int(deg.max())

    def is_connected(self) -> bool:
        """Connectivity of the graph (time-varying ones connect over time: True)."""
        if self.time_varying or self.n <= 1:
            return True
        return csgraph.connected_components(self.mixing(0), directed=False)[0] == 1

    @cached_property
    def _static_directed(self) -> tuple[np.ndarray, np.ndarray]:
        src, dst, _ = mixing.undirected_arrays(self.n, self.undirected)
        return src, dst


def build_topology(
    name: str,
    n: int,
    params: dict[str, object] | list[str] | None = None,
    seed: int = 0,
    scheme: str = "metropolis_hastings",
) -> Topology:
    """Build a topology by name; bad names or parameters raise GossipSettingError."""
    params = parse_params(params)
    if n < 1:
        raise GossipSettingError(f"--nodes must be at least 1, got {n}")
    if scheme not in mixing.SCHEMES:
        raise GossipSettingError(f"unknown mixing scheme {scheme!r}; choose one of "
                                 f"{', '.join(mixing.SCHEMES)}")
    kind, argument = kind_of(name)
    full = kind.resolve(params, n)
    if not isinstance(kind, StaticTopology):
        return Topology(name=name, n=n, params=full, seed=seed, scheme=scheme, kind=kind)
    if kind.argument:
        full[kind.argument.lower()] = argument
    built = kind.build(n, full, seed)
    graph = None
    if isinstance(built, nx.Graph):
        built.remove_edges_from(nx.selfloop_edges(built))
        graph, pairs = built, np.array(list(built.edges()), dtype=np.int64).reshape(-1, 2)
    else:
        pairs = _distinct_pairs(n, built)
    return Topology(name=name, n=n, params=full, seed=seed, scheme=scheme, undirected=pairs, kind=kind,
                    _graph=graph)


def _distinct_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """[E, 2] node pairs without self loops and with each undirected pair once, (low, high) sorted."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    keys = np.unique(lo[lo != hi] * n + hi[lo != hi])
    return np.stack([keys // n, keys % n], axis=1)


def _is_symmetric(w: sp.csr_matrix) -> bool:
    return abs(w - w.T).max() < 1e-12 if w.nnz else True
