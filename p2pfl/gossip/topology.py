"""Communication topologies by name, static and time-varying.

Every node that knows (name, params, n, seed) builds the same graph, and for time-varying
topologies the same graph of round t, with no communication: the node protocol relies on it.
Nodes are labelled 0..n-1. Directed edges (src, dst) mean "src sends its model to dst".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import networkx as nx
import numpy as np
import scipy.sparse as sp

from p2pfl.errors import UserError
from p2pfl.gossip import mixing
from p2pfl.gossip.spec import key_values

STATIC = (
    "ring", "torus", "complete", "star", "erdos_renyi", "barabasi_albert",
    "watts_strogatz", "regular", "exponential", "hypercube",
)
TIME_VARYING = ("one_peer_exponential", "epidemic")
NAMES = STATIC + TIME_VARYING

# Parameters each topology accepts, with their defaults (None: computed from n).
PARAMS: dict[str, dict[str, object]] = {
    "ring": {}, "complete": {}, "star": {}, "exponential": {}, "hypercube": {},
    "torus": {"rows": None},
    "erdos_renyi": {"p": None},
    "barabasi_albert": {"m": 2},
    "watts_strogatz": {"k": 4, "p": 0.1},
    "regular": {"d": 4},
    "one_peer_exponential": {},
    "epidemic": {"s": None, "variant": "oracle"},
    "file": {},
}


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
    """A named topology over n nodes. Build with `build_topology`."""

    name: str
    n: int
    params: dict[str, object]
    seed: int = 0
    scheme: str = "metropolis_hastings"
    graph: nx.Graph | None = None
    _cache: dict[int, sp.csr_matrix] = field(default_factory=dict, repr=False)

    @property
    def time_varying(self) -> bool:
        return self.name in TIME_VARYING

    def edges(self, t: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Directed edges (src, dst) of round t."""
        if not self.time_varying:
            return self._static_directed
        if self.name == "one_peer_exponential":
            return _one_peer_exponential(self.n, t)
        return _epidemic(self.n, int(self.params["s"]), str(self.params["variant"]), self.seed, t)

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
        if not self.time_varying:
            if 0 not in self._cache:
                self._cache[0] = mixing.mixing_matrix(self.n, self._undirected, self.scheme)
            return self._cache[0]
        return mixing.receiver_average(self.n, *self.edges(t))

    def spectral_gap(self, samples: int = 32) -> float:
        """Spectral gap of the mixing matrix; for time-varying topologies the expected rate."""
        if not self.time_varying:
            w = self.mixing(0)
            if self.scheme == "uniform" and not _is_symmetric(w):
                return mixing.mixing_rate_gap([w])
            return mixing.spectral_gap(w)
        if self.name == "one_peer_exponential":
            period = max(1, _log2_ceil(self.n))
            return mixing.mixing_rate_gap([self.mixing(t) for t in range(period)], product=True)
        return mixing.mixing_rate_gap([self.mixing(t) for t in range(samples)])

    def degree_stats(self) -> tuple[int, float, int]:
        """Min, mean, max out-degree (of round 0 for time-varying topologies)."""
        src, _ = self.edges(0)
        deg = np.bincount(src, minlength=self.n)
        return int(deg.min()), float(deg.mean()), int(deg.max())

    def is_connected(self) -> bool:
        """Connectivity of the graph (time-varying ones connect over time: True)."""
        if self.time_varying or self.n <= 1:
            return True
        return nx.is_connected(self.graph)

    @cached_property
    def _undirected(self) -> np.ndarray:
        return np.array(list(self.graph.edges()), dtype=np.int64).reshape(-1, 2)

    @cached_property
    def _static_directed(self) -> tuple[np.ndarray, np.ndarray]:
        src, dst, _ = mixing.undirected_arrays(self.n, self._undirected)
        return src, dst


def build_topology(
    name: str,
    n: int,
    params: dict[str, object] | list[str] | None = None,
    seed: int = 0,
    scheme: str = "metropolis_hastings",
) -> Topology:
    """Build a topology by name; bad names or parameters raise UserError."""
    params = parse_params(params)
    if n < 1:
        raise UserError(f"--nodes must be at least 1, got {n}")
    if scheme not in mixing.SCHEMES:
        raise UserError(f"unknown mixing scheme {scheme!r}; choose one of {', '.join(mixing.SCHEMES)}")
    key = "file" if name.startswith("file:") else name
    if key not in PARAMS:
        raise UserError(f"unknown topology {name!r}; choose one of {', '.join(NAMES)} or file:PATH")
    unknown = set(params) - set(PARAMS[key])
    if unknown:
        allowed = ", ".join(PARAMS[key]) or "none"
        raise UserError(f"topology {key} does not take {', '.join(sorted(unknown))} (takes: {allowed})")
    full = {**PARAMS[key], **params}
    if key == "file":
        graph = _from_file(Path(name[5:]), n)
    elif key in TIME_VARYING:
        graph = None
        if key == "epidemic":
            full["s"] = _epidemic_s(full, n)
            if full["variant"] not in ("oracle", "local"):
                raise UserError(f"epidemic variant must be oracle or local, got {full['variant']!r}")
    else:
        graph = _static(key, n, full, seed)
    return Topology(name=name, n=n, params=full, seed=seed, scheme=scheme, graph=graph)


def _static(name: str, n: int, p: dict[str, object], seed: int) -> nx.Graph:
    try:
        if name == "ring":
            g = nx.cycle_graph(n)
        elif name == "complete":
            g = nx.complete_graph(n)
        elif name == "star":
            g = nx.star_graph(n - 1)
        elif name == "torus":
            rows = int(p["rows"]) if p["rows"] is not None else _near_square(n)
            if rows < 1 or n % rows:
                raise UserError(f"torus: rows={rows} does not divide --nodes {n}")
            g = nx.convert_node_labels_to_integers(
                nx.grid_2d_graph(rows, n // rows, periodic=(rows > 2, n // rows > 2)), ordering="sorted"
            )
        elif name == "erdos_renyi":
            prob = float(p["p"]) if p["p"] is not None else min(1.0, 2 * math.log(max(n, 2)) / n)
            if not 0 <= prob <= 1:
                raise UserError(f"erdos_renyi: p must be in [0, 1], got {prob}")
            p["p"] = prob
            g = nx.fast_gnp_random_graph(n, prob, seed=seed)
        elif name == "barabasi_albert":
            g = nx.barabasi_albert_graph(n, int(p["m"]), seed=seed)
        elif name == "watts_strogatz":
            g = nx.watts_strogatz_graph(n, int(p["k"]), float(p["p"]), seed=seed)
        elif name == "regular":
            g = nx.random_regular_graph(int(p["d"]), n, seed=seed)
        elif name == "exponential":
            g = nx.Graph()
            g.add_nodes_from(range(n))
            hop = 1
            while hop < n:
                g.add_edges_from((i, (i + hop) % n) for i in range(n) if (i + hop) % n != i)
                hop *= 2
        else:  # hypercube
            dim = int(round(math.log2(n))) if n > 0 else -1
            if 2**dim != n:
                raise UserError(f"hypercube needs a power of two nodes, got {n}")
            g = nx.convert_node_labels_to_integers(nx.hypercube_graph(dim), ordering="sorted")
    except nx.NetworkXError as exc:
        raise UserError(f"topology {name} with {n} nodes and {p}: {exc}") from None
    g.remove_edges_from(nx.selfloop_edges(g))
    return g


def _from_file(path: Path, n: int) -> nx.Graph:
    if not path.is_file():
        raise UserError(f"topology file {path} does not exist")
    try:
        if path.suffix.lower() == ".graphml":
            g = nx.Graph(nx.read_graphml(path))
        else:
            g = nx.read_edgelist(path, nodetype=str, data=False, comments="#")
    except Exception as exc:  # noqa: BLE001 - networkx raises many types on bad files
        raise UserError(f"topology file {path}: cannot read it as an edge list or GraphML ({exc})") from None
    if g.number_of_nodes() != n:
        raise UserError(f"topology file {path} has {g.number_of_nodes()} nodes, --nodes is {n}")
    labels = sorted(g.nodes(), key=lambda v: (len(str(v)), str(v)))
    g = nx.relabel_nodes(g, {v: i for i, v in enumerate(labels)})
    g.remove_edges_from(nx.selfloop_edges(g))
    return g


def _near_square(n: int) -> int:
    rows = int(math.isqrt(n))
    while n % rows:
        rows -= 1
    return rows


def _log2_ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


def _epidemic_s(p: dict[str, object], n: int) -> int:
    s = p["s"] if p["s"] is not None else max(1, _log2_ceil(n))
    s = int(s)
    if n > 1 and not 1 <= s <= n - 1:
        raise UserError(f"epidemic: s must be between 1 and nodes-1 ({n - 1}), got {s}")
    return min(s, max(n - 1, 0))


def _one_peer_exponential(n: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Round t: node i sends to i + 2^(t mod ceil(log2 n)) (Ying et al., NeurIPS 2021)."""
    if n <= 1:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    hop = 2 ** (t % _log2_ceil(n))
    src = np.arange(n, dtype=np.int64)
    return src, (src + hop) % n


def _epidemic(n: int, s: int, variant: str, seed: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Epidemic Learning (de Vos et al., NeurIPS 2023): every node sends to s random peers.

    EL-Oracle: a random s-regular directed graph (everyone also receives exactly s models),
    made by laying a random permutation on a ring and sending to the next s positions.
    EL-Local: each node samples its s targets independently and uniformly.
    """
    if n <= 1 or s == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, t, 0xE1])
    if variant == "oracle":
        perm = rng.permutation(n)
        pos = np.arange(n)
        src = np.repeat(perm, s)
        dst = perm[(np.repeat(pos, s) + np.tile(np.arange(1, s + 1), n)) % n]
        return src.astype(np.int64), dst.astype(np.int64)
    # Local: s distinct targets per node, never itself: offsets in 1..n-1, rows redrawn until
    # their offsets are distinct.
    offs = rng.integers(1, n, size=(n, s))
    while True:
        srt = np.sort(offs, axis=1)
        bad = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
        if not len(bad):
            break
        offs[bad] = rng.integers(1, n, size=(len(bad), s))
    src = np.repeat(np.arange(n), s)
    dst = (src + offs.reshape(-1)) % n
    return src.astype(np.int64), dst.astype(np.int64)


def _is_symmetric(w: sp.csr_matrix) -> bool:
    return abs(w - w.T).max() < 1e-12 if w.nnz else True
