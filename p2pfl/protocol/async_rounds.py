"""The round machine of asynchronous gossip (`gossip.mode = "async"`, sans-I/O).

No barrier: after each local round k the node sends its model to its out-neighbours of round k
and at once mixes its fresh model with the latest model it holds from each in-neighbour, with
the weights of p2pfl.gossip.staleness (a model's age is how many local rounds this node is
ahead of it; models older than `max_staleness` rounds are left out). An arriving update only
replaces the one held from its sender, if it is newer; nothing waits for it. So a slow member
slows no one: its updates just arrive older.

It answers the same events and returns the same actions as `rounds.RoundMachine` (Train, Send,
Aggregate, Checkpoint, Done, Reject), so the daemon drives either. A restarted node has no
catch-up to do: it goes on from its checkpoint and its neighbours' newer models simply have
age 0. Roster changes (epochs) and joining mid-run are for synchronous gossip only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from p2pfl.gossip.staleness import async_row
from p2pfl.gossip.topology import Topology
from p2pfl.protocol.checks import Spec, check_against
from p2pfl.protocol.messages import InvalidMessage, ModelUpdate
from p2pfl.protocol.rounds import Action, Aggregate, Checkpoint, Done, Reject, Send, Train

State = dict[str, torch.Tensor]


class AsyncMachine:
    """One node's rounds without a barrier. `members` are peer IDs in roster order."""

    def __init__(self, self_id: str, members: list[str], topology: Topology, specs: list[Spec],
                 params: State, start_round: int = 0, rounds: int | None = None,
                 validate: Callable[[ModelUpdate], State] | None = None, max_staleness: int = 4,
                 alpha: float = 0.5) -> None:
        if self_id not in members:
            raise ValueError("this node is not in the roster")
        if topology.n != len(members):
            raise ValueError(f"topology has {topology.n} nodes, the roster {len(members)}")
        self.self_id, self.members, self.topology = self_id, list(members), topology
        self.index = {pid: i for i, pid in enumerate(self.members)}
        self.me = self.index[self_id]
        self.params, self.round, self.rounds = params, start_round, rounds
        self.validate = validate or (lambda update: check_against(update, specs))
        self.max_staleness, self.alpha = max_staleness, alpha
        self.held: dict[str, tuple[int, State]] = {}  # sender -> (its round, its checked model)
        self.training = False
        self.catch_up = False  # nothing to catch up: a restarted node goes on from its checkpoint

    # -- events ---------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Train the current round, or report that every round is done."""
        if self.rounds is not None and self.round >= self.rounds:
            return [Done(self.round)]
        self.training = True
        return [Train(self.round, self.params)]

    def local_model_ready(self, round: int, params: State) -> list[Action]:
        """Local training of `round` ended: send, and mix with what is held now."""
        if round != self.round or not self.training:
            return []
        self.training = False
        row = self.mixing_row(round)
        usable = [(p, r, s) for p, (r, s) in sorted(self.held.items(), key=lambda kv: self.index[kv[0]])
                  if round - r <= self.max_staleness and p in row]
        weights = async_row(row.get(self.self_id, 0.0), [(row[p], round - r) for p, r, _ in usable],
                            self.alpha, self.max_staleness)
        senders = tuple(p for (p, _, _), w in zip(usable, weights[1:], strict=True) if w > 0)
        states = (params,) + tuple(s for (_, _, s), w in zip(usable, weights[1:], strict=True) if w > 0)
        kept = (weights[0],) + tuple(w for w in weights[1:] if w > 0)
        missing = tuple(p for p in self.in_peers(round) if p not in senders)
        return [Send(round, tuple(self.out_peers(round)), params),
                Aggregate(round, senders, kept, states, missing)]

    def update_received(self, update: ModelUpdate) -> list[Action]:
        """A decoded, signature-checked update: held if it is the sender's newest."""
        sender, r = update.sender, update.round
        why = self.refusal(sender, r)
        if why is not None:
            return [Reject(sender, r, why, dropped=why.startswith("stale"))]
        try:
            tensors = self.validate(update)
        except InvalidMessage as exc:
            return [Reject(sender, r, str(exc))]
        self.held[sender] = (r, tensors)
        return []

    def deadline_passed(self, round: int) -> list[Action]:
        """Nothing waits for a deadline here."""
        return []

    def aggregated(self, round: int, params: State) -> list[Action]:
        """The mix of `round` is done: checkpoint it and train the next round."""
        if round != self.round:
            return []
        self.params, self.round = params, round + 1
        return [Checkpoint(self.round, params)] + self.start()

    # -- what the daemon asks ---------------------------------------------------------------

    def refusal(self, sender: str, round: int) -> str | None:
        """Why an update of `round` from `sender` is not worth reading (None: read it)."""
        if sender not in self.index:
            return "sender is not a member of the roster"
        if sender == self.self_id:
            return "update claims to come from this node"
        if self.rounds is not None and round >= self.rounds:
            return f"round {round} is past the last round {self.rounds - 1}"
        if sender not in self.in_peers(round):
            return f"not an in-neighbour in round {round}"
        if round <= self.held.get(sender, (-1,))[0]:
            return f"stale: holds round {self.held[sender][0]} from it"
        if round < self.round - self.max_staleness:
            return (f"stale: this node is at round {self.round}; models more than {self.max_staleness} "
                    "rounds old are left out")
        return None

    def out_peers(self, round: int) -> list[str]:
        return [self.members[j] for j in self.topology.out_neighbors(self.me, round)]

    def in_peers(self, round: int) -> list[str]:
        return [self.members[j] for j in self.topology.in_neighbors(self.me, round)]

    def mixing_row(self, round: int) -> dict[str, float]:
        """Peer ID -> weight this node gives it in `round` (itself included)."""
        w = self.topology.mixing(round)
        lo, hi = w.indptr[self.me], w.indptr[self.me + 1]
        return {self.members[int(j)]: float(v) for j, v in zip(w.indices[lo:hi], w.data[lo:hi], strict=True)}

    def member_of(self, round: int) -> bool:
        return True
