"""The round state machine of one node: decentralized SGD with no coordinator (sans-I/O).

Round t at node i: train locally from x_i(t); send the result to the out-neighbours of round t;
collect round-t updates from the in-neighbours until all have arrived or the deadline passes;
combine with the mixing weights of row i, re-normalised over what arrived; checkpoint; go to
t+1. Updates for a future round are buffered (at most max_ahead rounds ahead); a valid update
from further ahead means this node fell behind (it was down), and it catches up by jumping to
that round. Stale and duplicate updates are dropped; non-members and non-neighbours are
rejected.

The machine never touches a socket, clock or file. The driver (the daemon, a test, a
simulator) feeds it events through its methods and carries out the actions they return:
`Train`, `Send`, `Aggregate` (then report the result with `aggregated`), `Checkpoint`, `Done`,
and `Reject` (log it). Every member computes the same neighbour sets from the roster order,
the topology spec and the round number.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from p2pfl.gossip.mixing import weighted_average_state
from p2pfl.gossip.topology import Topology
from p2pfl.protocol.checks import Spec, check_against
from p2pfl.protocol.messages import InvalidMessage, ModelUpdate

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Train:
    """Run local training for `round` starting from `params`, then call `local_model_ready`."""

    round: int
    params: State = field(repr=False)


@dataclass(frozen=True)
class Send:
    """Sign and send `params` as the round-`round` update to each peer ID in `peers`."""

    round: int
    peers: tuple[str, ...]
    params: State = field(repr=False)


@dataclass(frozen=True)
class Aggregate:
    """Average `states` with `weights` (own model first), then call `aggregated`."""

    round: int
    senders: tuple[str, ...]  # peer IDs of states[1:]
    weights: tuple[float, ...]
    states: tuple[State, ...] = field(repr=False)
    missing: tuple[str, ...] = ()  # in-neighbours that did not arrive before the deadline


@dataclass(frozen=True)
class Checkpoint:
    """Persist `params` as the start of round `round` (atomically)."""

    round: int
    params: State = field(repr=False)


@dataclass(frozen=True)
class Done:
    """All rounds are finished."""

    round: int


@dataclass(frozen=True)
class Reject:
    """An update that was not used, and why (to log). `dropped` is benign (stale, duplicate)."""

    sender: str
    round: int
    reason: str
    dropped: bool = False


Action = Train | Send | Aggregate | Checkpoint | Done | Reject


class Phase(enum.Enum):
    TRAINING = "training"
    COLLECTING = "collecting"
    AGGREGATING = "aggregating"
    DONE = "done"


class RoundMachine:
    """One node's rounds. `members` are peer IDs in roster (node index) order."""

    def __init__(
        self,
        self_id: str,
        members: list[str],
        topology: Topology,
        specs: list[Spec],
        params: State,
        start_round: int = 0,
        rounds: int | None = None,
        max_ahead: int = 2,
        validate: Callable[[ModelUpdate], State] | None = None,
        catch_up: bool = True,
    ) -> None:
        """`validate` turns a decoded update into the tensors to combine, raising
        InvalidMessage (default: `check_against` the model's specs). Without `catch_up`,
        updates more than max_ahead rounds ahead are rejected instead of jumped to (for
        updates that are not models, e.g. CHOCO's compressed differences)."""
        if self_id not in members:
            raise ValueError("this node is not in the roster")
        if topology.n != len(members):
            raise ValueError(f"topology has {topology.n} nodes, the roster {len(members)}")
        self.self_id = self_id
        self.members = list(members)
        self.index = {pid: i for i, pid in enumerate(self.members)}
        self.me = self.index[self_id]
        self.topology = topology
        self.specs = specs
        self.params = params
        self.round = start_round
        self.rounds = rounds
        self.max_ahead = max_ahead
        self.validate = validate or (lambda update: check_against(update, specs))
        self.catch_up = catch_up
        self.phase = Phase.TRAINING
        self.own: State | None = None
        self.pending: dict[int, dict[str, State]] = {}  # round -> sender -> checked tensors

    # -- events ---------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """First actions: train the current round (or report that all rounds are done)."""
        if self.rounds is not None and self.round >= self.rounds:
            self.phase = Phase.DONE
            return [Done(self.round)]
        self.phase = Phase.TRAINING
        return [Train(self.round, self.params)]

    def local_model_ready(self, round: int, params: State) -> list[Action]:
        """Local training of `round` finished with `params`."""
        if round != self.round or self.phase is not Phase.TRAINING:
            return []
        self.own = params
        self.phase = Phase.COLLECTING
        actions: list[Action] = [Send(round, tuple(self.out_peers(round)), params)]
        return actions + self._maybe_aggregate(deadline=False)

    def update_received(self, update: ModelUpdate) -> list[Action]:
        """A decoded, signature-checked update arrived; validate it against roster and model."""
        sender, r = update.sender, update.round
        if sender not in self.index:
            return [Reject(sender, r, "sender is not a member of the roster")]
        if sender == self.self_id:
            return [Reject(sender, r, "update claims to come from this node")]
        if r < self.round or (r == self.round and self.phase in (Phase.AGGREGATING, Phase.DONE)):
            return [Reject(sender, r, f"stale: this node is at round {self.round}", dropped=True)]
        if self.rounds is not None and r >= self.rounds:
            return [Reject(sender, r, f"round {r} is past the last round {self.rounds - 1}")]
        if sender not in self.in_peers(r):
            return [Reject(sender, r, f"sender is not an in-neighbour in round {r}")]
        if sender in self.pending.get(r, {}):
            return [Reject(sender, r, "duplicate update for this round", dropped=True)]
        if r > self.round + self.max_ahead and not self.catch_up:
            return [Reject(sender, r, f"too far ahead: this node is at round {self.round}")]
        try:
            tensors = self.validate(update)
        except InvalidMessage as exc:
            return [Reject(sender, r, str(exc))]
        if r > self.round + self.max_ahead:
            return self._catch_up(r, sender, tensors)
        self.pending.setdefault(r, {})[sender] = tensors
        return self._maybe_aggregate(deadline=False) if r == self.round else []

    def deadline_passed(self, round: int) -> list[Action]:
        """The collection deadline of `round` passed: aggregate whatever arrived."""
        if round != self.round or self.phase is not Phase.COLLECTING:
            return []
        return self._maybe_aggregate(deadline=True)

    def aggregated(self, round: int, params: State) -> list[Action]:
        """The driver finished the `Aggregate` of `round`: checkpoint and start the next round."""
        if round != self.round or self.phase is not Phase.AGGREGATING:
            return []
        self.params = params
        self.own = None
        self.pending.pop(round, None)
        self.round += 1
        actions: list[Action] = [Checkpoint(self.round, params)]
        return actions + self.start()

    # -- neighbourhood of a round ---------------------------------------------------------

    def out_peers(self, round: int) -> list[str]:
        """Peer IDs this node sends to in `round`."""
        return [self.members[j] for j in self.topology.out_neighbors(self.me, round)]

    def in_peers(self, round: int) -> list[str]:
        """Peer IDs this node receives from in `round`."""
        return [self.members[j] for j in self.topology.in_neighbors(self.me, round)]

    def mixing_row(self, round: int) -> dict[int, float]:
        """Node index -> weight this node gives it in `round` (itself included)."""
        w = self.topology.mixing(round)
        lo, hi = w.indptr[self.me], w.indptr[self.me + 1]
        return {int(j): float(v) for j, v in zip(w.indices[lo:hi], w.data[lo:hi], strict=True)}

    # -- internals ------------------------------------------------------------------------

    def _catch_up(self, r: int, sender: str, tensors: State) -> list[Action]:
        """An in-neighbour is more than max_ahead rounds ahead (this node was down): jump to
        round r from the average of this node's model and the neighbour's, and keep that
        update as a round-r contribution."""
        params = weighted_average_state([self.params, tensors], [0.5, 0.5])
        self.pending = {k: v for k, v in self.pending.items() if k >= r}
        self.pending.setdefault(r, {})[sender] = tensors
        self.round, self.params, self.own = r, params, None
        actions: list[Action] = [Checkpoint(r, params)]
        return actions + self.start()

    def _maybe_aggregate(self, deadline: bool) -> list[Action]:
        if self.phase is not Phase.COLLECTING:
            return []
        expected = self.in_peers(self.round)
        arrived = self.pending.get(self.round, {})
        if not deadline and any(p not in arrived for p in expected):
            return []
        row = self.mixing_row(self.round)
        senders = tuple(p for p in expected if p in arrived)
        raw = [row.get(self.me, 0.0)] + [row.get(self.index[p], 0.0) for p in senders]
        total = sum(raw)
        weights = tuple(w / total for w in raw) if total > 0 else (1.0,) + (0.0,) * len(senders)
        self.phase = Phase.AGGREGATING
        states = (self.own,) + tuple(arrived[p] for p in senders)
        missing = tuple(p for p in expected if p not in arrived)
        return [Aggregate(self.round, senders, weights, states, missing)]
