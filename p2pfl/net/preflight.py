"""`p2pfl node --check`: a hospital's set-up checked before the first round, as a checklist.

Each check (`CHECKS`, in order) is a small function over what the checks before it found
(`Found`) and returns its lines (`Result`); a check whose inputs failed is skipped, saying
which. The checks reuse what a starting node runs (`p2pfl.net.assembly`), so a set-up that
passes here starts. Nothing is trained and nothing is written: the state folder is only probed
for a running node (`state_lock.holder`), and then the neighbours are not dialled, since this
node's peer ID twice would disturb them. The privacy check comes after the data check: the
epsilon a run spends depends on the number of training rows.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from p2pfl.errors import BAD_INPUT, EXIT_OK, EXIT_USAGE, UserError
from p2pfl.evaluation.metrics import warnings_for
from p2pfl.gossip.compression import parse_compression
from p2pfl.gossip.robust import parse_aggregator
from p2pfl.gossip.topology import Topology
from p2pfl.learning.local import LocalData, LocalTable
from p2pfl.net import assembly, probe, state_lock
from p2pfl.net.membership import Era, Membership
from p2pfl.protocol.identity import Ed25519PrivateKey, peer_id_of
from p2pfl.protocol.payload import check_compression
from p2pfl.settings.node import NodeSettings

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
MARKS = {OK: "[ok]", WARN: "[!!]", FAIL: "[FAIL]", SKIPPED: "[skip]"}
DEFAULT_TIMEOUT = 10.0  # seconds for each neighbour's dial and hello


@dataclass(frozen=True)
class Result:
    """One line of the checklist: which item, how it went, what was found, what to do."""

    name: str
    status: str  # OK, WARN, FAIL or SKIPPED
    detail: str
    fix: str = ""


@dataclass
class Found:
    """What the checks found so far, for the checks after them."""

    config: Path
    timeout: float
    settings: NodeSettings | None = None
    key: Ed25519PrivateKey | None = None
    identity: assembly.Identity | None = None
    topology: Topology | None = None
    table: LocalTable | None = None
    learner: assembly.Learner | None = None
    membership: Membership | None = None
    era: Era | None = None  # the roster version this node starts in


@dataclass(frozen=True)
class Check:
    """A named check, the checks it needs, and what to do when it raises bad input."""

    name: str
    run: Callable[[Found], list[Result]]
    needs: tuple[str, ...]
    fix: str


def run_checks(config: Path, timeout: float = DEFAULT_TIMEOUT) -> list[Result]:
    """Every check of CHECKS in order, against the node.toml at `config`."""
    found, passed, results = Found(Path(config), timeout), set(), []
    for check in CHECKS:
        missing = [n for n in check.needs if n not in passed]
        if missing:
            results.append(Result(check.name, SKIPPED, f"needs {', '.join(missing)}, which did not pass"))
            continue
        try:
            lines = check.run(found)
        except BAD_INPUT as exc:
            lines = [Result(check.name, FAIL, str(exc), check.fix)]
        results += lines
        if all(r.status in (OK, WARN) for r in lines):
            passed.add(check.name)
    return results


def exit_code(results: list[Result]) -> int:
    """EXIT_OK when no check failed (warnings and a skipped network check allowed), else EXIT_USAGE."""
    return EXIT_USAGE if any(r.status == FAIL for r in results) else EXIT_OK


def text(results: list[Result]) -> str:
    """The checklist: one line per result, a failure's or warning's fix indented below it."""
    lines = []
    for r in results:
        lines.append(f"{MARKS[r.status]:<6} {r.name}: {r.detail}")
        if r.fix and r.status != OK:
            lines.append(f"       fix: {r.fix}")
    lines.append(_summary([r.status for r in results]))
    return "\n".join(lines)


def _summary(statuses: list[str]) -> str:
    failed, skipped, warned = (statuses.count(s) for s in (FAIL, SKIPPED, WARN))
    if failed:
        return f"{failed} check(s) failed: fix them, then run `p2pfl node --check` again"
    if skipped:
        return f"no check failed; {skipped} skipped"
    return f"all checks passed{f' ({warned} warning(s))' if warned else ''}: ready to start"


def as_json(results: list[Result]) -> str:
    """One JSON object: {"ok": bool, "checks": [{"name", "status", "detail", "fix"}, ...]}."""
    return json.dumps({"ok": exit_code(results) == EXIT_OK, "checks": [asdict(r) for r in results]},
                      indent=1)


# -- the checks, in order -----------------------------------------------------------------

def _config(found: Found) -> list[Result]:
    from p2pfl.settings.load import node_settings

    found.settings = s = node_settings(found.config)
    return [Result("config", OK, f"{found.config} and its plan {s.path(s.node.plan)}")]


def _key(found: Found) -> list[Result]:
    s = found.settings
    path = s.path(s.node.key_file)
    found.key = assembly.load_node_key(s)
    detail = f"peer ID {peer_id_of(found.key)} ({path})"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode != 0o600:
        return [Result("key", WARN, f"{detail}: mode {mode:04o}, not 0600", f"chmod 600 {path}")]
    return [Result("key", OK, detail)]


def _roster(found: Found) -> list[Result]:
    s = found.settings
    path = s.path(s.node.roster).resolve()
    state_dir = s.path(s.node.state_dir)
    found.membership = membership = Membership.load(s, state_dir, store=False)
    found.era = era = membership.era_of_state(state_dir)
    roster = era.version.roster
    try:
        found.identity = i = assembly.find_identity(s, found.key, roster)
    except UserError as exc:
        return [_not_member(s, found.key, roster, path, exc)]
    return [Result("roster", OK, f"{s.node.name} is member {i.index + 1} of {len(i.members)} (roster "
                                 f"version {era.version.version}, {path})")]


def _not_member(s: NodeSettings, key: Ed25519PrivateKey, roster, path: Path, exc: UserError) -> Result:
    """The roster item when this key is not in the roster under node.name: what to change."""
    mine, name = peer_id_of(key), s.node.name
    listed = roster.by_name(name)
    if mine in roster:  # the key is there, under another name
        return Result("roster", FAIL, str(exc), f"set node.name = {roster.by_peer_id(mine).name!r} in "
                                                f"node.toml, or fix the names in {path}")
    if listed is not None:
        return Result("roster", FAIL, f"this key's peer ID is {mine}, but {path} has {listed.peer_id} "
                                      f"for {name}",
                      f"put {mine} as {name}'s peer_id in {path} (every member needs the new roster), "
                      f"or set node.key_file to the key of {listed.peer_id}")
    return Result("roster", FAIL, str(exc), f"add {name} with peer_id {mine} and its address to {path}, "
                                            "for every member")


def _topology(found: Found) -> list[Result]:
    s, i = found.settings, found.identity
    found.topology = t = found.era.topology
    ins = _names(i, t.in_neighbors(i.index, 0))
    outs = _names(i, t.out_neighbors(i.index, 0))
    return [Result("topology", OK, f"{s.gossip.topology}: in round 0 this node receives from {ins}, "
                                   f"sends to {outs}")]


def _aggregator(found: Found) -> list[Result]:
    s, i, t = found.settings, found.identity, found.topology
    aggregator = parse_aggregator(s.gossip.aggregator)
    assembly.check_aggregator(s, i.index, t, aggregator)
    compression = parse_compression(s.gossip.compression)
    check_compression(compression, aggregator, static=not t.time_varying)
    return [Result("aggregator", OK, f"{aggregator} (needs {aggregator.min_models()} model(s) a round), "
                                     f"compression {compression}")]


def _data(found: Found) -> list[Result]:
    s = found.settings
    found.table = table = assembly.node_table(s, *found.membership.data_share(s.node.name))
    data = table.prepare(table.statistics)
    classes = _class_names(s, data)
    counts = np.bincount(data.y_train.numpy(), minlength=data.n_classes)
    per_class = ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=True))
    out = [Result("data", OK, f"{len(data.y_train)} training rows ({per_class}), {len(data.y_val)} "
                              f"validation rows, {table.table.x.shape[1]} feature column(s)")]
    for c, n in zip(classes, counts, strict=True):
        if n == 0:
            out.append(Result("data", WARN, f"{c} has no training rows here ({per_class})",
                              f"check task.label_column ({s.task.label_column}) and this table's "
                              f"labels; this hospital's model learns {c} only from the others"))
    out += [Result("data", WARN, reason) for reason in warnings_for(data.y_val.numpy(), data.n_classes)]
    return out


def _model(found: Found) -> list[Result]:
    s = found.settings
    learner, _ = assembly.build_learner(s, found.table)
    found.learner = learner
    return [Result("model", OK, f"{s.model.kind}, {learner.n_params} parameters, input "
                                f"{tuple(learner.data.input_shape)}")]


def _privacy(found: Found) -> list[Result]:
    s, learner = found.settings, found.learner
    assembly.check_privacy(s, learner)
    p = s.privacy
    if p.noise <= 0:
        return [Result("privacy", OK, "no DP-SGD (privacy.noise = 0)")]
    cap = f", privacy.max_epsilon {p.max_epsilon:g}" if p.max_epsilon else ""
    return [Result("privacy", OK, f"DP-SGD spends epsilon {learner.epsilon(s.training.rounds):.2f} in "
                                  f"{s.training.rounds} rounds at delta {p.delta:g}{cap}")]


def _network(found: Found) -> list[Result]:
    s, i, t = found.settings, found.identity, found.topology
    state_dir = s.path(s.node.state_dir)
    pid = state_lock.holder(state_dir)
    if pid is not None:
        return [Result("network", SKIPPED, f"a node (pid {pid}) is running with {state_dir}: its neighbours "
                                           "are not dialled with its peer ID a second time",
                       "`p2pfl status --config node.toml` shows whom it hears from; stop it to check here")]
    peers = neighbours(i, t)
    if not peers:
        return [Result("network", OK, "no neighbour in round 0")]
    me = probe.Dialer(i.key, i.roster, found.era.consortium, found.era.plan)
    verdicts = probe.probe_all(me, peers, found.timeout)
    return [Result(f"network {i.names[p]}", OK if v.ok else FAIL, v.detail, v.fix)
            for p, v in ((p, verdicts[p]) for p in peers)]


def neighbours(identity: assembly.Identity, topology: Topology) -> list[str]:
    """Peer IDs this node dials in round 0, in roster order: its in- and out-neighbours."""
    near = set(topology.in_neighbors(identity.index, 0)) | set(topology.out_neighbors(identity.index, 0))
    return [identity.members[j] for j in sorted(near)]


def _names(identity: assembly.Identity, indices: list[int]) -> str:
    return ", ".join(identity.names[identity.members[j]] for j in indices) or "nobody"


def _class_names(s: NodeSettings, data: LocalData) -> list[str]:
    if len(s.task.classes) == data.n_classes:
        return [repr(c) for c in s.task.classes]
    return [f"class {c}" for c in range(data.n_classes)]


PLAN = "in plan.toml (every member holds the same plan)"
CHECKS = (
    Check("config", _config, (), "fix the file and key the message names (`p2pfl init` writes "
          "commented templates)"),
    Check("key", _key, ("config",), "check node.key_file and node.passphrase_env in node.toml "
          "(`p2pfl keygen` makes a key, `p2pfl id --key FILE` prints its peer ID)"),
    Check("roster", _roster, ("config", "key"), "fix node.roster in node.toml or the roster file"),
    Check("topology", _topology, ("roster",), f"fix gossip.topology or gossip.params {PLAN}"),
    Check("aggregator", _aggregator, ("topology",), f"choose a gossip.aggregator, gossip.compression "
          f"or gossip.topology that fit each other {PLAN}"),
    Check("data", _data, ("roster",), "fix data.source or data.columns in node.toml, or the table, "
          "so that it has the plan's features and task.label_column"),
    Check("model", _model, ("data",), f"fix [model] or [training] {PLAN}"),
    Check("privacy", _privacy, ("model",), f"raise privacy.noise or privacy.max_epsilon, or plan fewer "
          f"training.rounds, {PLAN}"),
    Check("network", _network, ("roster", "topology"), "check roster.toml's addresses"),
)
