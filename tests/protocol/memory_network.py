"""N round state machines driven by a deterministic in-memory event loop; messages go through
the real codec. Used to compare the protocol with the simulator's engines."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch

from p2pfl.gossip.combine import combine
from p2pfl.gossip.robust import Aggregator
from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.models import build_model
from p2pfl.learning.params import fingerprint, flatten, param_specs
from p2pfl.learning.trainer import OptimConfig, make_optimizer, train_steps
from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import generate_key, peer_id_of
from p2pfl.protocol.rounds import Aggregate, Checkpoint, Phase, RoundMachine, Send, Train
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.runner import prepare

N, ROUNDS, STEPS, BATCH, HIDDEN = 5, 6, 2, 16, 16

# (round, sender, receiver) -> whether that message arrives before the receiver's deadline
Delivery = Callable[[int, int, int], bool]


def sim_config(topology: str = "ring", **kw) -> SimConfig:
    """The simulator settings of the same run: data, model, batches and optimizer."""
    return SimConfig(dataset="digits", nodes=N, topology=topology, partition="dirichlet:0.5", seed=0,
                     hidden=str(HIDDEN), batch_size=BATCH, local_steps=STEPS, rounds=ROUNDS, lr=0.05,
                     **kw)


class Network:
    """N machines, each with its own model, optimizer and data; messages go through the codec."""

    def __init__(self, topology: str = "ring", silent: dict[int, set[int]] | None = None,
                 delivered: Delivery | None = None, aggregator: Aggregator | None = None,
                 overlap: bool = False):
        _, self.data, self.topo = prepare(sim_config(topology))
        self.template = build_model("mlp", 64, 10, (HIDDEN,), seed=0)
        self.keys = [generate_key() for _ in range(N)]
        self.ids = [peer_id_of(k) for k in self.keys]
        # roster order: the test uses the key order as node order
        self.models = [build_model("mlp", 64, 10, (HIDDEN,), seed=0) for _ in range(N)]
        self.opts = [make_optimizer(m, OptimConfig("sgd", lr=0.05)) for m in self.models]
        self.plan = BatchPlan(self.data.sizes, BATCH, STEPS, seed=0)
        specs = param_specs(self.template)
        self.fp = fingerprint(specs)
        self.machines = [
            RoundMachine(self.ids[i], self.ids, self.topo, specs,
                         {k: v.detach().clone() for k, v in self.models[i].named_parameters()},
                         rounds=ROUNDS, overlap=overlap)
            for i in range(N)
        ]
        silent = silent or {}  # round -> nodes whose sends are lost
        self.delivered: Delivery = delivered or (lambda t, j, i: j not in silent.get(t, set()))
        self.aggregator = aggregator or Aggregator()
        self.queue: deque = deque()
        self.log: list[tuple[int, object]] = []
        self.checkpoints: dict[int, list[int]] = {i: [] for i in range(N)}

    def run(self) -> None:
        for i, m in enumerate(self.machines):
            self.queue.extend((i, a) for a in m.start())
        while self.queue:
            i, action = self.queue.popleft()
            self.log.append((i, action))
            self.queue.extend((i, a) for a in self._do(i, action))
            if not self.queue:
                # quiet network: the deadline passes for the nodes that started waiting first
                waiting = [m.round for m in self.machines if m.phase is Phase.COLLECTING]
                for k, m in enumerate(self.machines):
                    if waiting and m.round == min(waiting):
                        self.queue.extend((k, a) for a in m.deadline_passed(m.round))

    def _do(self, i: int, action):
        m = self.machines[i]
        if isinstance(action, Train):
            with torch.no_grad():
                for name, p in self.models[i].named_parameters():
                    p.copy_(action.params[name])
            x, y = self.data.node(i)
            rows = [s.index[i] for s in self.plan.round(action.round)]
            train_steps(self.models[i], self.opts[i], x, y, rows)
            params = {k: v.detach().clone() for k, v in self.models[i].named_parameters()}
            return m.local_model_ready(action.round, params)
        if isinstance(action, Send):
            wire = bytes(encode(self.keys[i], consortium=consortium_of({}), round=action.round,
                                fingerprint=self.fp, num_samples=1, weight=1.0, tensors=action.params))
            for peer in action.peers:
                j = self.ids.index(peer)
                if self.delivered(action.round, i, j):
                    self.queue.extend((j, a) for a in self.machines[j].update_received(decode(wire)))
            return []
        if isinstance(action, Aggregate):
            new, _ = combine(list(action.states), list(action.weights), self.aggregator)
            with torch.no_grad():
                for name, p in self.models[i].named_parameters():
                    p.copy_(new[name])
            return m.aggregated(action.round, new)
        if isinstance(action, Checkpoint):  # the model the next round starts from
            self.checkpoints[i].append(action.round)
            with torch.no_grad():
                for name, p in self.models[i].named_parameters():
                    p.copy_(action.params[name])
        return []

    def params(self) -> torch.Tensor:
        return torch.stack([flatten(m) for m in self.models])
