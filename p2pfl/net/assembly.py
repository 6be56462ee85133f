"""Building a node: key, roster, data, model, optimizer, topology, restored state, update format,
consortium and round machine, checked against each other, in three small objects.

`daemon.Node` takes what `assemble` returns and only runs it. Every check that can refuse to
start (key not in the roster, too few neighbours for the aggregator, privacy budget) is here,
so a node that is built can run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from p2pfl.errors import UserError
from p2pfl.evaluation.metrics import warnings_for
from p2pfl.files.keys import load_key, passphrase_from_env
from p2pfl.files.roster_file import load_roster
from p2pfl.gossip.compression import parse_compression
from p2pfl.gossip.robust import Aggregator, parse_aggregator
from p2pfl.gossip.topology import Topology
from p2pfl.learning.batches import BatchPlan
from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.local import LocalData, LocalTable, load_local_table
from p2pfl.learning.models import build_model
from p2pfl.learning.params import fingerprint, flatten, param_specs
from p2pfl.learning.preprocess import Statistics
from p2pfl.learning.privacy import epsilon
from p2pfl.learning.sources import resolve_spec, source_options
from p2pfl.learning.trainer import OptimConfig, make_optimizer
from p2pfl.net import checkpoint
from p2pfl.net.eventlog import EventLog
from p2pfl.net.membership import Era, Membership
from p2pfl.net.state_lock import StateLock
from p2pfl.protocol.async_rounds import AsyncMachine
from p2pfl.protocol.checks import Spec
from p2pfl.protocol.consortium import Consortium
from p2pfl.protocol.identity import Ed25519PrivateKey, peer_id_of
from p2pfl.protocol.payload import UpdateFormat
from p2pfl.protocol.roster import Roster
from p2pfl.protocol.roster_chain import RosterVersion
from p2pfl.protocol.rounds import Epoch, RoundMachine
from p2pfl.settings.node import NodeSettings, PrivacySection
from p2pfl.settings.plan import feature_schema


@dataclass(frozen=True)
class Identity:
    """Who this node is: its key, and its place among the roster's members (name order)."""

    key: Ed25519PrivateKey
    roster: Roster
    self_id: str
    index: int
    members: list[str]  # peer IDs in node-index order
    names: dict[str, str]  # peer ID -> member name


@dataclass
class Learner:
    """This node's local learning: data, model, optimizer, batch plan and DP-SGD settings.

    `data` is preprocessed with `data.statistics`: the checkpoint's on a resume, else this
    node's own until the members agree on theirs (`agree` True: a hospital's own table at a
    fresh start; see p2pfl.net.agreement), when `table.prepare` makes it again."""

    data: LocalData
    table: LocalTable
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    plan: BatchPlan
    privacy: PrivacySection
    sample_rate: float  # DP-SGD sampling rate of one batch
    local_steps: int
    specs: list[Spec]
    fingerprint: str
    n_params: int
    agree: bool = False

    def epsilon(self, rounds: int) -> float:
        """Privacy spent after `rounds` rounds of DP-SGD, at privacy.delta."""
        return epsilon(self.privacy.noise, self.sample_rate, rounds * self.local_steps, self.privacy.delta)

    def params(self) -> dict[str, torch.Tensor]:
        """A copy of the model's parameters, by name."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}


@dataclass
class Gossip:
    """The protocol side: topology, aggregator, update format, consortium and round machine."""

    topology: Topology
    aggregator: Aggregator
    format: UpdateFormat
    consortium: Consortium
    plan: dict[str, object]  # the sections the consortium ID was derived from (the hello says them)
    machine: RoundMachine | AsyncMachine
    start_round: int
    membership: Membership


@dataclass
class Parts:
    """Everything a Node runs with, built and checked by `assemble`."""

    settings: NodeSettings
    identity: Identity
    learner: Learner
    gossip: Gossip
    state_dir: Path
    state_lock: StateLock  # held until the process exits


def load_files(settings: NodeSettings) -> tuple[Ed25519PrivateKey, Roster]:
    """Load the key (passphrase from the named environment variable) and the roster."""
    return load_node_key(settings), load_roster(settings.path(settings.node.roster))


def load_node_key(settings: NodeSettings) -> Ed25519PrivateKey:
    """node.key_file, decrypted with the passphrase in node.passphrase_env (if named)."""
    key_file = settings.path(settings.node.key_file)
    return load_key(key_file, passphrase_from_env(settings.node.passphrase_env, key_file))


def assemble(settings: NodeSettings, key: Ed25519PrivateKey, roster: Roster | None, log: EventLog) -> Parts:
    """Build and check every part of a node; UserError says which setting does not fit.
    `roster` None: the roster versions of the configured file and the state folder
    (p2pfl.net.membership); a Roster: that one only (version 1)."""
    g, t = settings.gossip, settings.training
    if t.threads:
        torch.set_num_threads(t.threads)
    state_dir = settings.path(settings.node.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_lock = StateLock(state_dir)  # one node per state folder, held until exit
    state_lock.acquire()
    membership = (Membership.load(settings, state_dir) if roster is None
                  else Membership(settings, state_dir, [RosterVersion(roster)]))
    share = membership.data_share(settings.node.name)  # which rows of a shared dataset are its
    learner, initial = build_learner(settings, node_table(settings, *share))
    start = _restore(state_dir, learner, log)
    era = membership.starting_era(start)
    identity = _identity_in(settings, key, era)
    check_reachability(settings, identity, log)
    roster, topology = era.version.roster, era.topology
    learner.fingerprint = fingerprint(learner.model)
    aggregator = parse_aggregator(g.aggregator)
    check_aggregator(settings, identity.index, topology, aggregator)
    check_privacy(settings, learner)
    fmt = UpdateFormat.build(learner.specs, learner.fingerprint, parse_compression(g.compression),
                             aggregator, initial, identity.members, restarted=start > 0,
                             static=not topology.time_varying)
    plan, consortium = era.plan, era.consortium
    machine = _machine(settings, identity, membership, era, learner, fmt, aggregator, start)
    gossip = Gossip(topology, aggregator, fmt, consortium, plan, machine, start, membership)
    log.info("loaded", peer_id=identity.self_id, index=identity.index, members=len(identity.members),
             train_rows=len(learner.data.y_train), params=learner.n_params,
             start_round=start, rounds=t.rounds, topology=g.topology, roster_version=era.version.version,
             consortium=consortium.id.hex()[:16])
    _check_catch_up(identity.index, gossip, log)
    for reason in warnings_for(learner.data.y_val.numpy(), learner.data.n_classes):
        log.warn("validation_split", reason=reason)
    return Parts(settings, identity, learner, gossip, state_dir, state_lock)


def find_identity(settings: NodeSettings, key: Ed25519PrivateKey, roster: Roster) -> Identity:
    """This key's place in the roster; UserError if it is not there under node.name."""
    self_id = peer_id_of(key)
    me = [i for i, m in enumerate(roster.members) if m.peer_id == self_id]
    if not me:
        raise UserError(f"this node's peer ID {self_id} is not in the roster")
    index = me[0]
    if roster.members[index].name != settings.node.name:
        raise UserError(f"node.name is {settings.node.name!r} but the roster calls this key "
                        f"{roster.members[index].name!r}")
    return Identity(key, roster, self_id, index, [m.peer_id for m in roster.members],
                    {m.peer_id: m.name for m in roster.members})


def _machine(settings: NodeSettings, identity: Identity, membership: Membership, era: Era, learner: Learner,
             fmt: UpdateFormat, aggregator: Aggregator, start: int) -> RoundMachine | AsyncMachine:
    """The round machine of gossip.mode: synchronous (overlapping or not), with an epoch per later
    roster version; or asynchronous (p2pfl.protocol.async_rounds), for a roster that does not change."""
    g, t = settings.gossip, settings.training
    later = [e for e in membership.eras if e.start > era.start]
    if g.mode == "async":
        if later or membership.eras[0].start > 0:
            raise UserError("gossip.mode = \"async\" runs with a roster that does not change: this "
                            f"node holds roster versions up to {membership.head.version}; use "
                            "gossip.mode = \"sync\"")
        if fmt.choco is not None:
            raise UserError(f"gossip.compression {g.compression} (CHOCO) needs gossip.mode = \"sync\"")
        return AsyncMachine(identity.self_id, identity.members, era.topology, learner.specs, learner.params(),
                            start_round=start, rounds=t.rounds, validate=fmt.validator.check,
                            max_staleness=g.max_staleness, alpha=g.staleness_alpha)
    if g.mode == "overlap" and fmt.choco is not None:
        raise UserError(f"gossip.compression {g.compression} (CHOCO) needs gossip.mode = \"sync\": its "
                        "public copies follow the trained models")
    # a catch-up needs the word of more members than the aggregator tolerates (rounds.py)
    machine = RoundMachine(identity.self_id, identity.members, era.topology, learner.specs,
                           learner.params(), start_round=start, rounds=t.rounds,
                           validate=fmt.validator.check, catch_up=fmt.choco is None,
                           quorum=max(2, aggregator.tolerates() + 1), overlap=g.mode == "overlap")
    for e in later:
        machine.schedule(Epoch(e.start, tuple(e.members), e.topology))
    return machine


def _identity_in(settings: NodeSettings, key: Ed25519PrivateKey, era: Era) -> Identity:
    """`find_identity` in the era this node starts in, saying when a version removed or
    rotated it."""
    member = era.version.roster.by_name(settings.node.name)
    version = era.version.version
    if member is None:
        raise UserError(f"{settings.node.name} was removed from the roster in version {version} "
                        f"(from round {era.start}): this node takes no further part")
    if member.peer_id != peer_id_of(key):
        raise UserError(f"roster version {version} (from round {era.start}) gives {member.name} the peer ID "
                        f"{member.peer_id}, not this key's {peer_id_of(key)}: start with the new key "
                        "(node.key_file)")
    identity = find_identity(settings, key, era.version.roster)
    return replace(identity, names=era.names)


def check_reachability(settings: NodeSettings, identity: Identity, log: EventLog | None = None) -> None:
    """node.reachability agrees with this node's roster addresses: "outbound" exactly when the
    roster reaches it through relay members (circuit addresses; see p2pfl.net.relay)."""
    me = identity.roster.by_peer_id(identity.self_id)
    outbound = settings.node.reachability == "outbound"
    if outbound and not me.relayed:
        raise UserError(f"node.reachability is \"outbound\" but the roster's addresses of {me.name} "
                        "are direct: list circuit addresses through relay members "
                        "(/ip4/HOST/tcp/PORT/p2p/RELAY_PEER_ID/p2p-circuit) so that the others can "
                        "reach this node")
    if me.relayed and not outbound:
        raise UserError(f"the roster reaches {me.name} through relay members (/p2p-circuit) but "
                        "node.reachability is \"direct\": set it to \"outbound\" so that this "
                        "node reserves a slot on them")
    if settings.node.relay and log is not None:
        served = [m.name for m in identity.roster if identity.self_id in m.relays]
        if not served:
            log.warn("relay_unused", reason="node.relay is true but no roster address goes through "
                     "this node")


def node_table(settings: NodeSettings, index: int, members: int) -> LocalTable:
    """This node's table, read and split (not yet preprocessed): member `index` of `members`."""
    d, task = settings.data, settings.task
    source = resolve_spec(d.source, settings.base_dir)  # a relative path: beside node.toml
    return load_local_table(source, index, members, task.label_column, task.classes, task.partition,
                            task.seed, source_options(source, d), feature_schema(settings))


def build_learner(settings: NodeSettings, table: LocalTable) -> tuple[Learner, torch.Tensor]:
    """The local learner on `table` (fingerprint not yet taken) and the initial flat model, the
    same at every member (same seed)."""
    t = settings.training
    data = table.prepare(table.statistics)  # the shapes; an own table's agreed statistics come later
    model = build_model(settings.model.kind, data.input_shape, data.n_classes,
                        tuple(settings.model.hidden), seed=t.seed)
    optimizer = make_optimizer(model, OptimConfig(t.optimizer, t.lr, t.momentum))
    initial = flatten(model)
    plan = BatchPlan(data.plan_sizes, t.batch_size, t.local_steps, seed=t.seed)
    sample_rate = min(1.0, t.batch_size / len(data.y_train))
    learner = Learner(data, table, model, optimizer, plan, settings.privacy, sample_rate, t.local_steps,
                      param_specs(model), "", initial.numel())
    return learner, initial


def _restore(state_dir: Path, learner: Learner, log: EventLog) -> int:
    """Load the last good checkpoint and make metrics.jsonl agree with it; the round to start.
    A shared source's statistics are alike everywhere; an own table's are the checkpoint's."""
    restored = checkpoint.recover(state_dir, learner.model, learner.optimizer)
    for warning in restored.warnings:
        log.warn("checkpoint_fallback", reason=warning)
    if restored.repairs:
        log.info("state_repaired", what="; ".join(restored.repairs))
    if learner.table.source.shared:
        return restored.round
    learner.agree = restored.preprocessing is None  # a fresh start: agree with the members
    if restored.preprocessing is not None:
        try:
            agreed = Statistics.from_dict(restored.preprocessing, learner.table.table.columns)
        except LearningSettingError as exc:
            raise UserError(f"{restored.path}: its preprocessing statistics do not fit the plan's "
                            f"features ({exc}); move it away to start fresh") from None
        learner.data = learner.table.prepare(agreed)
    return restored.round


def check_aggregator(settings: NodeSettings, index: int, topology: Topology, aggregator: Aggregator) -> None:
    """A robust rule needs enough models every round: check the topology before starting."""
    need = aggregator.min_models()
    rounds = range(1) if not topology.time_varying else range(min(settings.training.rounds, 64))
    have = min(len(topology.in_neighbors(index, r)) + 1 for r in rounds)
    if have < need:
        raise UserError(f"gossip.aggregator {aggregator} needs at least {need} models per round, "
                        f"but this node receives from {have - 1} neighbour(s) (plus its own model) "
                        f"with topology {settings.gossip.topology}")


def check_privacy(settings: NodeSettings, learner: Learner) -> None:
    """Refuse a DP-SGD run whose planned rounds would spend more than privacy.max_epsilon."""
    privacy, rounds = settings.privacy, settings.training.rounds
    if privacy.noise > 0:
        planned = learner.epsilon(rounds)
        if privacy.max_epsilon and planned > privacy.max_epsilon:
            raise UserError(f"{rounds} rounds of DP-SGD with noise {privacy.noise} would spend "
                            f"epsilon {planned:.2f} > privacy.max_epsilon {privacy.max_epsilon}")


def _check_catch_up(index: int, gossip: Gossip, log: EventLog) -> None:
    """Say at start if this node can never catch up by jumping (too few in-neighbours)."""
    if gossip.topology.time_varying or not gossip.machine.catch_up:
        return
    have = len(gossip.topology.in_neighbors(index, 0))
    if have < gossip.machine.quorum:
        log.warn("catch_up_impossible", in_neighbours=have, quorum=gossip.machine.quorum,
                 effect="after a restart this node runs its missed rounds by deadline")
