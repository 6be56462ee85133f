"""The roster versions a node holds (p2pfl.protocol.roster_chain), stored in its state folder,
and what each one means for the run: its members, topology and consortium ID (an era).

At the first start the configured roster file is the trust anchor; it is copied to
`STATE_DIR/rosters/v{N}.toml`. Every later version this node accepts (from a peer, or from the
configured file edited in place) must follow the newest held one (`check_successor`), take
effect after the round this node is at, and is stored there atomically before it is used. At
a restart the stored chain is checked again from its first version, and the configured file is
read as one more offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2pfl.errors import StateWriteError, UserError
from p2pfl.files.roster_file import ROSTERS_DIR, load_version, stored_versions, write_version
from p2pfl.gossip.topology import Topology, build_topology
from p2pfl.net.checkpoint import read_metrics
from p2pfl.net.shared_settings import shared_sections
from p2pfl.protocol.consortium import Consortium, consortium_of
from p2pfl.protocol.roster import InvalidRoster, Member
from p2pfl.protocol.roster_chain import (
    RosterVersion,
    check_chain,
    check_successor,
)
from p2pfl.settings.node import NodeSettings


@dataclass(frozen=True)
class Era:
    """One roster version in effect: from `version.effective_round` (the first held version:
    from the start) until the next one."""

    version: RosterVersion
    plan: dict[str, object]  # the shared sections: the hello says them
    consortium: Consortium
    topology: Topology

    @property
    def start(self) -> int:
        return self.version.effective_round

    @property
    def members(self) -> list[str]:
        return list(self.version.roster.peer_ids)

    @property
    def names(self) -> dict[str, str]:
        return {m.peer_id: m.name for m in self.version.roster.members}


class Membership:
    """The eras of this node's run, oldest first."""

    def __init__(self, settings: NodeSettings, state_dir: Path, chain: list[RosterVersion],
                 store: bool = True):
        self.settings, self.folder, self.writes = settings, Path(state_dir) / ROSTERS_DIR, store
        self.eras = [self._era(v) for v in chain]

    @classmethod
    def load(cls, settings: NodeSettings, state_dir: Path, store: bool = True) -> Membership:
        """The stored chain (checked) and the configured roster file; UserError names the file.
        `store` False: write nothing (a check, an export)."""
        path = settings.path(settings.node.roster)
        configured = load_version(path)
        folder = Path(state_dir) / ROSTERS_DIR
        chain = [load_version(p) for p in stored_versions(state_dir)]
        if not chain:
            chain = [configured]
        try:
            check_chain(chain, str(folder))
        except InvalidRoster as exc:
            raise UserError(str(exc)) from None
        held = {v.version: v for v in chain}
        if configured.version in held and held[configured.version].content() != configured.content():
            raise UserError(f"{path}: version {configured.version} differs from the version "
                            f"{configured.version} this node holds ({folder}/v{configured.version}.toml)")
        membership = cls(settings, state_dir, chain, store)
        if configured.version > chain[-1].version:
            reason = membership.refusal(configured, current_round=-1, where=str(path))
            if reason is not None:
                raise UserError(reason)
        for era in membership.eras:
            membership.store(era.version)
        if configured.version > chain[-1].version:
            membership.accept(configured)
        return membership

    # -- what the node asks -------------------------------------------------------------

    @property
    def head(self) -> RosterVersion:
        return self.eras[-1].version

    def at(self, round: int) -> Era:
        """The era of `round` (the first one for rounds before any effective round)."""
        return max((e for e in self.eras if e.start <= round), key=lambda e: e.start, default=self.eras[0])

    def starting_era(self, round: int) -> Era:
        """The era of a node with `round` rounds done (one admitted mid-run starts in its first)."""
        return self.at(max(round, self.eras[0].start))

    def era_of_state(self, state_dir: Path) -> Era:
        """The era of the node whose state folder this is, by the rounds metrics.jsonl holds
        (for tools that read a node without running it)."""
        return self.starting_era(len(read_metrics(state_dir)) if Path(state_dir).is_dir() else 0)

    def first_with(self, name: str) -> Era | None:
        """The first era naming `name` (its data is that era's share of a shared dataset)."""
        return next((e for e in self.eras if e.version.roster.by_name(name) is not None), None)

    def data_share(self, name: str) -> tuple[int, int]:
        """(index, members) of `name` in the first era naming it: which share of a shared
        dataset is its (the same at every restart); UserError if no version names it."""
        first = self.first_with(name)
        if first is None:
            held = ", ".join(str(e.version.version) for e in self.eras)
            raise UserError(f"node.name {name!r} is not a member of the roster (versions held: {held})")
        names = [m.name for m in first.version.roster.members]
        return names.index(name), len(names)

    def member(self, peer_id: str) -> Member | None:
        """The newest roster entry of this peer ID (its addresses as the latest version says)."""
        for era in reversed(self.eras):
            found = era.version.roster.by_peer_id(peer_id)
            if found is not None:
                return found
        return None

    def all_names(self) -> dict[str, str]:
        """Peer ID -> member name over every era (for logs about any member, past or coming)."""
        names: dict[str, str] = {}
        for era in self.eras:
            names.update(era.names)
        return names

    def refusal(self, version: RosterVersion, current_round: int, where: str = "roster") -> str | None:
        """Why `version` cannot be accepted now (None: it can). A version already held is not
        refused here: see `holds`."""
        try:
            check_successor(self.head, version, where)
        except InvalidRoster as exc:
            return str(exc)
        if version.effective_round <= current_round:
            return (f"{where}: version {version.version} takes effect at round {version.effective_round}, "
                    f"but this node is at round {current_round}: propose it again with a later round")
        return None

    def holds(self, version: RosterVersion) -> bool:
        """Whether this exact version is held already."""
        return any(e.version.version == version.version and e.version.content() == version.content()
                   for e in self.eras)

    def accept(self, version: RosterVersion) -> Era:
        """Store `version` (checked by `refusal`) and add its era; StateWriteError if the write fails."""
        self.store(version)
        era = self._era(version)
        self.eras.append(era)
        return era

    def store(self, version: RosterVersion) -> None:
        path = self.folder / f"v{version.version}.toml"
        if not self.writes or path.exists():
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_version(path, version)
        except OSError as exc:
            raise StateWriteError(f"{path}: cannot store roster version {version.version}: "
                                  f"{exc.strerror or exc}") from None

    def _era(self, version: RosterVersion) -> Era:
        g = self.settings.gossip
        plan = shared_sections(self.settings, version.roster, version.version)
        topology = build_topology(g.topology, len(version.roster), g.params, seed=g.seed, scheme=g.mixing)
        return Era(version, plan, consortium_of(plan), topology)
