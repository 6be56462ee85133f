"""Topologies by name: one module per topology, each defining `COMPONENT`.

A static topology builds one undirected networkx graph from (n, params, seed); a time-varying
one gives the directed edges of round t. Every member that knows (name, params, n, seed) builds
the same graph, and for time-varying topologies the same graph of round t, with no
communication: the node protocol relies on it. Adding a topology is adding one module here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from p2pfl.gossip.errors import GossipSettingError
from p2pfl.registry import Param, Registry

Params = dict[str, object]
Edges = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class StaticTopology:
    """A fixed undirected graph; mixing weights come from the configured scheme."""

    name: str
    summary: str
    # (n, params, seed) -> graph on 0..n-1: networkx, or [E, 2] node pairs (self loops and
    # repeated pairs are dropped)
    build: Callable[[int, Params, int], nx.Graph | np.ndarray]
    params: tuple[Param, ...] = ()
    paper: str = ""
    argument: str = ""  # what may follow "name:" (file:PATH); empty: nothing
    time_varying = False

    def resolve(self, params: Params, n: int) -> Params:
        """Parameters with their defaults; static builders fill the computed ones themselves."""
        return _with_defaults(self, params)


@dataclass(frozen=True)
class TimeVaryingTopology:
    """Directed edges that change every round; each receiver averages what it got."""

    name: str
    summary: str
    edges: Callable[[int, Params, int, int], Edges]  # (n, params, seed, t) -> (src, dst)
    params: tuple[Param, ...] = ()
    paper: str = ""
    # rounds whose mixing matrices multiply to one period (its gap is then exact); 0: sample
    period: Callable[[int], int] | None = None
    check: Callable[[Params, int], Params] = field(default=lambda p, n: p)
    argument: str = ""
    time_varying = True

    def resolve(self, params: Params, n: int) -> Params:
        """Parameters with their defaults, the computed ones filled and checked."""
        return self.check(_with_defaults(self, params), n)


Kind = StaticTopology | TimeVaryingTopology
TOPOLOGIES: Registry[Kind] = Registry("topology", __name__, GossipSettingError)


def kind_of(spec: str) -> tuple[Kind, str]:
    """The topology a spec names and its argument: 'ring' -> (ring, ''), 'file:g.txt' -> (file, 'g.txt')."""
    name, colon, argument = spec.partition(":")
    kind = TOPOLOGIES.get(name) if name in TOPOLOGIES else None
    if kind is None or bool(colon) != bool(kind.argument):
        raise GossipSettingError(f"unknown topology {spec!r}; choose one of {usages()}")
    return kind, argument


def usages() -> str:
    """'complete, epidemic, ..., file:PATH' for help texts."""
    return ", ".join(k.name + (f":{k.argument}" if k.argument else "") for k in TOPOLOGIES)


def log2_ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


def checked(build: Callable[[int, Params, int], nx.Graph]) -> Callable[[int, Params, int], nx.Graph]:
    """A builder whose networkx errors become one GossipSettingError naming the topology."""
    def run(n: int, p: Params, seed: int) -> nx.Graph:
        try:
            return build(n, p, seed)
        except nx.NetworkXError as exc:
            name = getattr(build, "__module__", "").rsplit(".", 1)[-1]
            raise GossipSettingError(f"topology {name} with {n} nodes and {p}: {exc}") from None
    return run


def ring_offsets(n: int, hops: Mapping[int, int] | list[int]) -> np.ndarray:
    """The graph on 0..n-1 linking i and i + h (mod n) for every hop h, as [E, 2] node pairs
    (built with numpy: networkx takes seconds for the 800,000 edges of 50,000 nodes)."""
    i = np.arange(n, dtype=np.int64)
    pairs = [np.stack([i, (i + int(hop)) % n], axis=1) for hop in hops]
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def power_of_two(n: int, name: str) -> int:
    """log2(n), or a GossipSettingError when n is not a power of two."""
    dim = int(round(math.log2(n))) if n > 0 else -1
    if 2**dim != n:
        raise GossipSettingError(f"{name} needs a power of two nodes, got {n}")
    return dim


def _with_defaults(kind: Kind, params: Params) -> Params:
    allowed = {p.key: p.default for p in kind.params}
    unknown = set(params) - set(allowed)
    if unknown:
        raise GossipSettingError(f"topology {kind.name} does not take {', '.join(sorted(unknown))} "
                        f"(takes: {', '.join(allowed) or 'none'})")
    return {**allowed, **params}
