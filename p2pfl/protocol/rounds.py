"""The round state machine of one node: decentralized SGD with no coordinator (sans-I/O).

Round t at node i: train locally from x_i(t); send the result to the out-neighbours of round t;
collect round-t updates from the in-neighbours until all have arrived or the deadline passes;
combine with the mixing weights of row i, re-normalised over what arrived; checkpoint; go to
t+1. With `overlap` (gossip.mode = "overlap", p2pfl.gossip.overlap) x_i(t) itself is sent, at
the start of the round while training runs, the round-t models are combined with x_i(t), and the
result gets the node's own training change y_i(t) - x_i(t) added. Updates for a future round are
buffered (at most max_ahead rounds ahead). Stale and duplicate updates are dropped; non-members
and non-neighbours are rejected.

Catching up, and why one member cannot make anyone skip rounds
---------------------------------------------------------------
A node that was down (a restart, a long freeze) finds its neighbours rounds ahead; it must
jump forward or it would run every missed round alone, one deadline each. But a jump skips
rounds, and a lying member could claim the last round to end everyone's training. The rule:

1. An update from further ahead than max_ahead is *evidence*, not a contribution: after the
   same checks as any update it is held, the latest one per in-neighbour (memory is bounded by
   the in-degree), and changes nothing by itself.
2. The node jumps only when at least `quorum` distinct in-neighbours hold evidence, and only to
   R, the quorum-th highest round they claim: at least `quorum` members vouch for R or later.
   The daemon sets quorum = max(2, b + 1), where b = `tolerates()` of the aggregator (trimmed_mean's
   b; 0 for mean, median and clipped): with at most b liars, at least one witness is honest and
   really is at R, and even under plain mean one lying member moves no one. A node that has
   fewer in-neighbours than the quorum never jumps; it runs its missed rounds by deadline.
3. The adopted model goes through the configured aggregator like any round's: an `Aggregate`
   of the node's last checkpointed model and the witnesses' models, equal weights. A robust
   aggregator thus trims a lying witness just as it trims a lying contribution.
4. The jump is reported (`Checkpoint.caught_up_from` and `.witnesses`), so the driver writes a
   warning line and one row per skipped round saying on whose word it skipped.
Why no bound on the length of one jump: the quorum already guarantees an honest witness at R or
later, and a bound would not stop b + 1 colluders, who can repeat their claim every round.
Evidence that falls inside the buffer window as the node advances is dropped, not used: else
a member could fix its contribution to a future round in advance with an old model. Only right
after a jump do the witnesses' updates become contributions of their rounds: they are current.

Membership changes (p2pfl.protocol.roster_chain) are epochs: from its `start` round on, an
epoch's members and topology give every neighbour set and mixing row (`schedule`). A node that
is not a member of the epoch of its current round is done; one admitted mid-run begins at its
epoch's start (`join_at`) with a model fetched from a neighbour.

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

from p2pfl.gossip.mixing import renormalised_row
from p2pfl.gossip.overlap import with_local_change
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
    catch_up_to: int | None = None  # a catch-up: states[1:] are the witnesses' later models


@dataclass(frozen=True)
class Checkpoint:
    """Persist `params` as the start of round `round` (atomically).

    After a catch-up, rounds `caught_up_from` .. round - 1 were skipped on the word of
    `witnesses` (peer IDs); otherwise `caught_up_from` is None and round - 1 ended normally.
    """

    round: int
    params: State = field(repr=False)
    caught_up_from: int | None = None
    witnesses: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class Held:
    """An update from beyond the buffer window, held as catch-up evidence (to log)."""

    sender: str
    round: int
    witnesses: int  # distinct in-neighbours holding evidence now
    quorum: int


Action = Train | Send | Aggregate | Checkpoint | Done | Reject | Held


@dataclass(frozen=True)
class Epoch:
    """The members (peer IDs in node-index order) and topology of rounds `start` onwards."""

    start: int
    members: tuple[str, ...]
    topology: Topology

    def __post_init__(self) -> None:
        if self.topology.n != len(self.members):
            raise ValueError(f"topology has {self.topology.n} nodes, the roster {len(self.members)}")

    @property
    def index(self) -> dict[str, int]:
        return {pid: i for i, pid in enumerate(self.members)}


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
        quorum: int = 2,
        overlap: bool = False,
    ) -> None:
        """`validate` turns a decoded update into the tensors to combine, raising
        InvalidMessage (default: `check_against` the model's specs). Without `catch_up`,
        updates more than max_ahead rounds ahead are rejected instead of held as evidence (for
        updates that are not models, e.g. CHOCO's compressed differences). `quorum`: distinct
        in-neighbours whose evidence a jump needs (see the module docstring); at least 2.
        `overlap`: send each round's starting model while training (see the module docstring)."""
        if quorum < 2:
            raise ValueError("a catch-up needs the word of at least 2 members")
        if self_id not in members:
            raise ValueError("this node is not in the roster")
        self.self_id = self_id
        self.epochs = [Epoch(0, tuple(members), topology)]
        self._indices = [self.epochs[0].index]
        self.specs = specs
        self.params = params
        self.round = start_round
        self.rounds = rounds
        self.max_ahead = max_ahead
        self.validate = validate or (lambda update: check_against(update, specs))
        self.catch_up = catch_up
        self.quorum = quorum
        self.overlap = overlap
        self.claims: dict[str, tuple[int, State]] = {}  # sender -> its latest far-ahead update
        self.jump: tuple[int, tuple[str, ...]] | None = None  # catch-up being aggregated: round, witnesses
        self.phase = Phase.TRAINING
        self.own: State | None = None
        self.pending: dict[int, dict[str, State]] = {}  # round -> sender -> checked tensors

    # -- events ---------------------------------------------------------------------------

    def schedule(self, epoch: Epoch) -> None:
        """From `epoch.start` on (a later round than this node's, and than any epoch's so far),
        train with its members and topology."""
        if epoch.start <= max(self.round, self.epochs[-1].start):
            raise ValueError(f"an epoch starting at round {epoch.start} is not in the future "
                             f"(round {self.round}, last epoch from {self.epochs[-1].start})")
        self.epochs.append(epoch)
        self._indices.append(epoch.index)

    def join_at(self, round: int, params: State) -> None:
        """Begin at `round` with `params` (a member admitted mid-run, before `start`)."""
        self.round, self.params = round, params

    def epoch(self, round: int) -> Epoch:
        """The epoch of `round`."""
        return self.epochs[self._epoch_index(round)]

    def member_of(self, round: int) -> bool:
        """Whether this node is a member in `round`."""
        return self.self_id in self._indices[self._epoch_index(round)]

    def start(self) -> list[Action]:
        """First actions: train the current round (or report that all rounds are done, or that
        this node is no member from this round on)."""
        if (self.rounds is not None and self.round >= self.rounds) or not self.member_of(self.round):
            self.phase = Phase.DONE
            return [Done(self.round)]
        self.phase = Phase.TRAINING
        train = Train(self.round, self.params)
        return [self._send(self.params), train] if self.overlap else [train]

    def local_model_ready(self, round: int, params: State) -> list[Action]:
        """Local training of `round` finished with `params`."""
        if round != self.round or self.phase is not Phase.TRAINING:
            return []
        self.own = params
        self.phase = Phase.COLLECTING
        actions: list[Action] = [] if self.overlap else [self._send(params)]
        return actions + self._maybe_aggregate(deadline=False)

    def update_received(self, update: ModelUpdate) -> list[Action]:
        """A decoded, signature-checked update arrived; validate it against roster and model."""
        sender, r = update.sender, update.round
        if sender not in self._indices[self._epoch_index(max(r, self.round))]:
            return [Reject(sender, r, f"sender is not a member of the roster in round {max(r, self.round)}")]
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
        if r > self.round + self.max_ahead and r <= self.claims.get(sender, (-1,))[0]:
            return [Reject(sender, r, "already holds a later or equal update from it", dropped=True)]
        try:
            tensors = self.validate(update)
        except InvalidMessage as exc:
            return [Reject(sender, r, str(exc))]
        if r > self.round + self.max_ahead:
            self.claims[sender] = (r, tensors)
            return [Held(sender, r, len(self.claims), self.quorum)] + self._maybe_catch_up()
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
        if self.overlap and self.jump is None and self.own is not None:
            params = with_local_change(params, self.params, self.own)
        self.params = params
        self.own = None
        if self.jump is not None:
            (target, witnesses), self.jump = self.jump, None
            checkpoint = Checkpoint(target, params, caught_up_from=round, witnesses=witnesses)
            self.round = target
        else:
            self.round += 1
            checkpoint = Checkpoint(self.round, params)
        self.pending = {r: v for r, v in self.pending.items() if r >= self.round}
        self._absorb_claims(jumped=checkpoint.caught_up_from is not None)
        self.phase = Phase.TRAINING  # between rounds: a jump may start here
        jump = self._maybe_catch_up()
        return [checkpoint] + (jump or self.start())

    def refusal(self, sender: str, round: int) -> str | None:
        """Why an announced update of `round` from `sender` is not worth reading (checked
        before the payload; None: read it)."""
        if round < self.round:
            return f"stale: this node is at round {self.round}"
        if self.rounds is not None and round >= self.rounds:
            return f"round {round} is past the last round"
        if sender not in self.in_peers(round):
            return f"not an in-neighbour in round {round}"
        return None

    # -- neighbourhood of a round ---------------------------------------------------------

    def out_peers(self, round: int) -> list[str]:
        """Peer IDs this node sends to in `round` (none in a round it is no member of)."""
        e, me = self._me(round)
        return [] if me is None else [e.members[j] for j in e.topology.out_neighbors(me, round)]

    def in_peers(self, round: int) -> list[str]:
        """Peer IDs this node receives from in `round`."""
        e, me = self._me(round)
        return [] if me is None else [e.members[j] for j in e.topology.in_neighbors(me, round)]

    def mixing_row(self, round: int) -> dict[str, float]:
        """Peer ID -> weight this node gives it in `round` (itself included)."""
        e, me = self._me(round)
        if me is None:
            return {}
        w = e.topology.mixing(round)
        lo, hi = w.indptr[me], w.indptr[me + 1]
        return {e.members[int(j)]: float(v) for j, v in zip(w.indices[lo:hi], w.data[lo:hi], strict=True)}

    def _epoch_index(self, round: int) -> int:
        return max(i for i, e in enumerate(self.epochs) if e.start <= round or i == 0)

    def _me(self, round: int) -> tuple[Epoch, int | None]:
        i = self._epoch_index(round)
        return self.epochs[i], self._indices[i].get(self.self_id)

    # -- internals ------------------------------------------------------------------------

    def _absorb_claims(self, jumped: bool) -> None:
        """Evidence now inside the buffer window is dropped, except right after a jump: then it
        is the witnesses' current update and becomes a buffered contribution of its round."""
        for sender, (r, tensors) in list(self.claims.items()):
            if r <= self.round + self.max_ahead:
                del self.claims[sender]
                if jumped and r >= self.round:
                    self.pending.setdefault(r, {}).setdefault(sender, tensors)

    def _maybe_catch_up(self) -> list[Action]:
        """Jump when `quorum` in-neighbours vouch for a later round (see the module docstring):
        aggregate the last checkpointed model with the witnesses' models."""
        if self.phase in (Phase.AGGREGATING, Phase.DONE) or len(self.claims) < self.quorum:
            return []
        target = sorted((r for r, _ in self.claims.values()), reverse=True)[self.quorum - 1]
        order = self._indices[self._epoch_index(self.round)]  # member order, then any later member
        witnesses = tuple(sorted((p for p, (r, _) in self.claims.items() if r >= target),
                                 key=lambda p: (order.get(p, len(order)), p)))
        self.jump = (target, witnesses)
        self.phase = Phase.AGGREGATING
        states = (self.params,) + tuple(self.claims[p][1] for p in witnesses)
        weights = (1.0 / len(states),) * len(states)
        return [Aggregate(self.round, witnesses, weights, states, catch_up_to=target)]

    def _send(self, params: State) -> Send:
        return Send(self.round, tuple(self.out_peers(self.round)), params)

    def _maybe_aggregate(self, deadline: bool) -> list[Action]:
        if self.phase is not Phase.COLLECTING:
            return []
        expected = self.in_peers(self.round)
        arrived = self.pending.get(self.round, {})
        if not deadline and any(p not in arrived for p in expected):
            return []
        row = self.mixing_row(self.round)
        senders = tuple(p for p in expected if p in arrived)
        raw = [row.get(self.self_id, 0.0)] + [row.get(p, 0.0) for p in senders]
        weights = renormalised_row(raw)
        self.phase = Phase.AGGREGATING
        states = (self.params if self.overlap else self.own,) + tuple(arrived[p] for p in senders)
        missing = tuple(p for p in expected if p not in arrived)
        return [Aggregate(self.round, senders, weights, states, missing)]
