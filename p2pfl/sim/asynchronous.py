"""Asynchronous gossip in the simulator (`--mode async`): no round barrier, simulated time.

Event-driven, the node daemon's rule (p2pfl.protocol.async_rounds) in simulated time. Node i's
local rounds end at the instants speed_i, 2 speed_i, ... (p2pfl.sim.speeds). When its round k
(counted from 0) ends, node i

1. has trained one local round: the batches of round k of a synchronous run (BatchPlan), so the
   same seed gives the same data order in both modes;
2. sends its fresh model to its out-neighbours of round k; it arrives at once (communication
   takes no simulated time) and replaces the model they held from i;
3. mixes its fresh model with the latest model it holds from each in-neighbour of round k,
   weighted by `p2pfl.gossip.staleness.async_row` (ages in local rounds, k_i - k_j; a model older
   than max_staleness is left out; a neighbour not heard from yet too): the AD-PSGD pattern (Lian
   et al. 2018) with SWIFT's wait-free mixing (Bornstein et al. 2023) and FedAsync's staleness
   discount (Xie et al. 2019).

Each node stops after its own `rounds` local rounds, as the daemon does, so the run ends when the
slowest node ends: after rounds x its local round, the time the synchronous run takes. Nodes
whose rounds end at the same instant all send before any of them mixes, so with equal speeds
every node mixes its neighbours' fresh models (age 0, weights W): exactly D-PSGD.

Plain gossip only (no faults, attacks, compression, robust aggregation or DP), with the reference
engine's per-node step (`ReferenceEngine.train_node`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from p2pfl.errors import UserError
from p2pfl.gossip.staleness import async_row
from p2pfl.gossip.topology import Topology
from p2pfl.learning.batches import BatchPlan, Step
from p2pfl.learning.params import flatten, load_flat
from p2pfl.settings import fields as F
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.options import Robustness
from p2pfl.sim.reference import ReferenceEngine
from p2pfl.sim.speeds import parse_speeds

# (time, node, [(in-neighbour, age, weight), ...]) of one mix, for instruments and tests
MixHook = Callable[[float, int, list[tuple[int, int, float]]], None]
TIE = 1e-12  # relative: local rounds that end this close together end at the same instant


def check_settings(cfg: SimConfig) -> None:
    """--mode, --max-staleness, --staleness-alpha and --speeds, checked (no data or graph needed)."""
    for key, concept in (("mode", F.GOSSIP_MODE), ("max_staleness", F.MAX_STALENESS),
                         ("staleness_alpha", F.STALENESS_ALPHA)):
        why = concept.check(getattr(cfg, key)) if concept.check else None
        if why:
            raise UserError(f"--{key.replace('_', '-')} {why}")
    parse_speeds(cfg.speeds, cfg.nodes, cfg.seed)


def check_async_run(opts: Robustness) -> None:
    """What asynchronous gossip in the simulator cannot run: one line naming it."""
    given = [flag for flag, on in (
        ("--dp", opts.dp is not None), ("--attack", opts.attack is not None),
        ("--dropout/--stragglers/--message-loss", opts.faulty),
        (f"--compression {opts.compression}", opts.compression.name != "none"),
        (f"--aggregator {opts.aggregator}", not opts.aggregator.is_linear)) if on]
    if given:
        raise UserError(f"--mode async simulates plain gossip; it does not model {given[0]} (run it with "
                        "--mode sync)")


@dataclass
class MixStats:
    """Counts over every mix of a run."""

    mixes: int = 0  # mixes of a node with at least one in-neighbour
    held: int = 0  # in-neighbours' models held at those mixes
    stale: int = 0  # of those, left out for being older than max_staleness

    def as_dict(self) -> dict[str, float]:
        return {"mixes": self.mixes, "held_models": self.held, "stale_left_out": self.stale,
                "stale_fraction": self.stale / self.held if self.held else 0.0}


@dataclass(frozen=True)
class Links:
    """Who mixes what in one round: each node's own weight, its (in-neighbour, weight) pairs and
    the nodes it sends to."""

    own: np.ndarray
    incoming: list[list[tuple[int, float]]]
    outgoing: list[list[int]]

    @classmethod
    def of(cls, w: sp.csr_matrix) -> Links:
        c = sp.csr_matrix(w, dtype=np.float64)
        n = c.shape[0]
        incoming = [[(int(j), float(v)) for j, v in zip(c.indices[c.indptr[i]:c.indptr[i + 1]],
                                                        c.data[c.indptr[i]:c.indptr[i + 1]], strict=True)
                     if j != i and v != 0] for i in range(n)]
        outgoing: list[list[int]] = [[] for _ in range(n)]
        for i, row in enumerate(incoming):
            for j, _ in row:
                outgoing[j].append(i)
        return cls(c.diagonal(), incoming, outgoing)


class AsyncGossip:
    """The state of an asynchronous run: each node's models, local rounds and held models.

    `rounds`: the local rounds each node does before it stops (None: no end).
    """

    def __init__(self, engine: ReferenceEngine, topo: Topology, plan: BatchPlan, speeds: np.ndarray,
                 alpha: float, max_staleness: int, rounds: int | None = None, on_mix: MixHook | None = None):
        self.engine = engine
        self.topo = topo
        self.plan = plan
        self.speeds = np.asarray(speeds, dtype=np.float64)
        self.alpha = float(alpha)
        self.max_staleness = int(max_staleness)
        self.limit = rounds
        self.on_mix = on_mix
        n = len(self.speeds)
        self.rounds = np.zeros(n, dtype=np.int64)  # local rounds each node has done
        self.held: list[dict[int, tuple[torch.Tensor, int]]] = [{} for _ in range(n)]  # j -> (model, k_j)
        self.last_loss = np.full(n, np.nan)  # of each node's latest local round
        self.messages = 0  # models sent, over the run
        self.stats = MixStats()
        self.time = 0.0
        self._steps: dict[int, list[Step]] = {}
        self._links: dict[int, Links] = {}

    def advance(self, until: float) -> None:
        """Run every local round that ends at or before simulated time `until`, in time order."""
        while True:
            ends = (self.rounds + 1) * self.speeds
            if self.limit is not None:
                ends = np.where(self.rounds < self.limit, ends, np.inf)
            t = float(ends.min())
            if t > until * (1 + TIE):
                break
            self.time = t
            self._instant(np.flatnonzero(ends <= t * (1 + TIE)))
        self.time = max(self.time, until)

    def _instant(self, nodes: np.ndarray) -> None:
        """The nodes whose local round ends now: all train, then all send, then each mixes."""
        fresh: dict[int, tuple[torch.Tensor, int]] = {}
        for i in nodes:
            k = int(self.rounds[i])
            self.last_loss[i] = self.engine.train_node(int(i), self._cached(self._steps, k, self.plan.round))
            self.rounds[i] = k + 1
            fresh[int(i)] = (flatten(self.engine.models[i]), k)
        for i, (model, k) in fresh.items():
            out = self._round_links(k).outgoing[i]
            for o in out:
                self.held[o][i] = (model, k + 1)
            self.messages += len(out)
        for i, (model, k) in fresh.items():
            self._mix(i, model, self._round_links(k))

    def _mix(self, i: int, own: torch.Tensor, links: Links) -> None:
        """Node i's fresh model mixed with the models it holds from its in-neighbours."""
        if not links.incoming[i]:
            return
        held = [(j, wij) for j, wij in links.incoming[i] if j in self.held[i]]
        ages = [max(0, int(self.rounds[i]) - self.held[i][j][1]) for j, _ in held]
        weights = async_row(float(links.own[i]), [(wij, a) for (_, wij), a in zip(held, ages, strict=True)],
                            self.alpha, self.max_staleness)
        self.stats.mixes += 1
        self.stats.held += len(held)
        self.stats.stale += sum(a > self.max_staleness for a in ages)
        if self.on_mix is not None:
            self.on_mix(self.time, i, list(zip([j for j, _ in held], ages, weights[1:], strict=True)))
        if not held:
            return
        new = own * weights[0]
        for (j, _), weight in zip(held, weights[1:], strict=True):
            if weight:
                new += weight * self.held[i][j][0]
        load_flat(self.engine.models[i], new)

    def _round_links(self, k: int) -> Links:
        """The links of round k (one set for a static topology)."""
        return self._cached(self._links, k if self.topo.time_varying else 0,
                            lambda r: Links.of(self.topo.mixing(r)))

    def _cached(self, cache: dict, k: int, make: Callable[[int], object]):
        """cache[k], made if missing; rounds no node will reach again are dropped."""
        if k not in cache:
            low = int(self.rounds.min())
            for r in [r for r in cache if 0 < r < low]:
                del cache[r]
            cache[k] = make(k)
        return cache[k]
