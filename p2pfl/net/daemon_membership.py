"""The node's membership at run time (a part of `daemon.Node`): roster versions offered by a
peer or installed in the roster file, checked, stored and passed on (p2pfl.net.membership,
p2pfl.net.roster_gossip); the switch to a version's members at its effective round; leaving
when a version removes this node or rotates its key; and joining mid-run with a model fetched
from a neighbour (p2pfl.net.joining)."""

from __future__ import annotations

import json

import torch
import trio

from p2pfl.errors import EXIT_KEY_ROTATED, EXIT_NO_QUORUM, StateWriteError, UserError
from p2pfl.files.roster_file import load_version
from p2pfl.learning.preprocess import Statistics
from p2pfl.net import joining, quorum, roster_gossip
from p2pfl.net.host import MODEL_PROTOCOL, ROSTER_PROTOCOL, close_unlisted
from p2pfl.net.membership import Era
from p2pfl.net.reports import ReportExchange
from p2pfl.protocol.checks import check_against
from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.consortium import check_consortium
from p2pfl.protocol.messages import InvalidMessage
from p2pfl.protocol.roster_chain import RosterVersion
from p2pfl.protocol.rounds import Epoch
from p2pfl.protocol.status_line import State


class MembershipMixin:
    """Node's methods for roster changes and joining; it uses the Node's host, machine,
    membership, log and audit."""

    def _admitted_peers(self) -> set[str]:
        """Peer IDs the host lets in: members of this era and of every era to come."""
        eras = [e for e in self.membership.eras if e.start > self.era.start]
        return {p for e in [self.era, *eras] for p in e.members} - {self.self_id}

    def _roster_file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.settings.path(self.settings.node.roster).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def _roster_file_changed(self) -> None:
        """Each round: a new version installed in the configured roster file is offered here
        like one from a peer (one line if it is refused)."""
        stamp = self._roster_file_stamp()
        if stamp is None or stamp == self.roster_seen:
            return
        self.roster_seen = stamp
        path = self.settings.path(self.settings.node.roster)
        try:
            version = await trio.to_thread.run_sync(load_version, path)
        except UserError as exc:
            self.log.warn("roster_file_refused", file=str(path), reason=str(exc))
            return
        if version.version > self.membership.head.version or not self.membership.holds(version):
            self._offer(version, "roster file")

    def _offer(self, version: RosterVersion, source: str) -> str | None:
        """Accept `version` (from a member's peer ID, or "roster file") if it follows the newest
        version held and takes effect after this node's round; None if held now, else why not."""
        if self.membership.holds(version):
            return None
        who = self.names.get(source, source)
        reason = self.membership.refusal(version, self.machine.round, where=f"roster version from {who}")
        if reason is None and self.format.choco is not None:
            reason = "roster changes need a gossip.compression without CHOCO"
        if reason is None and self.asynchronous:
            reason = "roster changes need gossip.mode = \"sync\""
        if reason is not None:
            self.log.warn_limited("roster_version_refused", source, source=who, version=version.version,
                                  reason=reason)
            self._audit("roster_version_refused", source=who, version=version.version, reason=reason)
            return reason
        try:
            era = self.membership.accept(version)
        except StateWriteError as exc:
            self.log.error("state_write_failed", error=str(exc), exit_code=exc.exit_code, effect="stopping")
            self._stop(exc.exit_code)
            return "this node could not store it"
        self.machine.schedule(Epoch(era.start, tuple(era.members), era.topology))
        self.names.update(era.names)
        self.allowed.update(era.members)
        self.status_gossip.know(era.consortium.id, era.members)
        signers = [self.names.get(p, p) for p in version.signers()]
        self.log.info("roster_version_accepted", version=version.version, effective_round=era.start,
                      members=len(era.members), source=who, signers=",".join(signers))
        self._audit("roster_version_accepted", version=version.version, digest=version.digest(),
                    effective_round=era.start, source=who, signers=signers,
                    members=[m.name for m in version.roster.members])
        peers = ({p for e in self.membership.eras[-2:] for p in e.members} - {self.self_id, source})
        for peer in sorted(peers):
            self.nursery.start_soon(self._pass_on, version, peer)
        return None

    async def _pass_on(self, version: RosterVersion, peer: str) -> None:
        refused = await roster_gossip.push(version, peer, self._opener(ROSTER_PROTOCOL), self.timeouts,
                                           give_up=self.settings.gossip.start_timeout)
        if refused is not None:
            self.log.warn_limited("roster_version_not_taken", peer, peer=self.names.get(peer, peer),
                                  version=version.version, reason=refused)

    async def _on_roster(self, stream) -> None:
        """A member offers a roster version (p2pfl.net.roster_gossip)."""
        peer = await self._admitted(stream, self.roster_streams, quorum.MAX_HELLOS, "roster offer")
        if peer is None:
            return
        try:
            await roster_gossip.answer(stream, peer, self._offer, self.timeouts)
        except Exception as exc:  # noqa: BLE001 - a bad offer: one line, reset, go on
            await self._transfer_failed(stream, peer, exc)
        finally:
            self.roster_streams[peer] -= 1

    async def _enter_era(self, era: Era) -> None:
        """The machine reached `era`'s first round: its members, consortium ID and neighbours
        from now on; connections of members no longer in it are closed."""
        old, self.era = self.era, era
        self.members, self.consortium, self.consortium_plan = era.members, era.consortium, era.plan
        self.roster = self.relaying.roster = era.version.roster
        self.relaying.names.update(era.names)
        if self.self_id in era.members:
            self.index = era.members.index(self.self_id)
        self.allowed.clear()
        self.allowed.update(self._admitted_peers())
        self.reports = ReportExchange(self.key, era.consortium.id, self.index, era.members, self.names,
                                      self.log, self.timeouts)
        self.status.members = [self.names[p] for p in era.members]
        self.status.roster_version = era.version.version
        self.status_gossip.set_era(era.consortium.id, self.index, era.members)
        gone = await close_unlisted(self.host, self.allowed | {self.self_id})
        before, after = old.version.roster, era.version.roster
        left = sorted(m.name for m in before if after.by_name(m.name) is None)
        rotated = sorted(m.name for m in before if (n := after.by_name(m.name)) and n.peer_id != m.peer_id)
        self.log.info("roster_switched", version=era.version.version, round=era.start,
                      members=len(era.members), left=",".join(left) or "-",
                      rotated=",".join(rotated) or "-", closed=len(gone))
        self._audit("roster_switched", version=era.version.version, round=era.start,
                    members=[m.name for m in era.version.roster.members],
                    closed=[self.names.get(p, p) for p in gone])

    def _leave_if_not_member(self, round: int) -> None:
        """Done at `round` because a roster version left this node out: removed (exit 0), or its
        name has a new key (exit EXIT_KEY_ROTATED: start again with it)."""
        if self.machine.member_of(round):
            return
        era = self.membership.at(round)
        member = era.version.roster.by_name(self.settings.node.name)
        if member is None:
            self.left = "removed"
            self.log.info("removed_from_roster", version=era.version.version, round=round,
                          effect="this node takes no further part")
        else:
            self.left = "key rotated"
            self.exit_code = EXIT_KEY_ROTATED
            self.log.warn("key_rotated", version=era.version.version, round=round, new_peer_id=member.peer_id,
                          exit_code=EXIT_KEY_ROTATED, effect="start again with the new key in node.key_file")
        self._audit("left_roster", version=era.version.version, round=round, why=self.left)

    async def _join(self) -> None:
        """Admitted mid-run: fetch the model at the start of a round from the version's first
        round on from an in-neighbour (and, for a hospital's own table, the agreed statistics,
        the same from two of them), then train from there; exit 6 after gossip.start_timeout."""
        first = self.membership.eras[0].start
        self.machine.join_at(first, self.machine.params)  # updates of that round wait for the model
        peers = self.machine.in_peers(first)
        self._set_state(State.WAITING_FOR_PEERS)
        self.log.info("joining", round=first, from_peers=",".join(self.names[p] for p in peers))
        joined = False
        with trio.move_on_after(self.settings.gossip.start_timeout):
            while not joined and not self.stopping.is_set():
                answers = [a for p in peers if (a := await self._fetch_model(p, first)) is not None]
                joined = self._adopt(answers, need_statistics=min(2, len(peers)) if self.exchange else 0)
                if not joined:
                    await trio.sleep(0.5)
        if not joined and not self.stopping.is_set():
            self.log.error("join_timeout", seconds=self.settings.gossip.start_timeout, round=first,
                           exit_code=EXIT_NO_QUORUM, effect="stopping: no neighbour served the model")
            self._stop(EXIT_NO_QUORUM)

    async def _fetch_model(self, peer: str, first: int) -> tuple[str, int, dict, bytes] | None:
        """(peer, round, tensors, statistics JSON) served by `peer`, None if it is not there yet
        or its answer fails a check (one line)."""
        try:
            stream = await self._opener(MODEL_PROTOCOL)(peer)
            payload, statistics = await joining.fetch(stream, self.max_bytes, self.timeouts)
            update = await trio.to_thread.run_sync(decode, payload, self.max_bytes, peer)
            if update.round < first:
                return None
            check_consortium(update, self.membership.at(update.round).consortium)
            return peer, update.round, check_against(update, self.specs), statistics
        except InvalidMessage as exc:
            self.log.warn_limited("model_rejected", peer, peer=self.names[peer], reason=str(exc))
        except Exception:  # noqa: BLE001 - not reachable yet: ask again
            pass
        return None

    def _adopt(self, answers: list[tuple[str, int, dict, bytes]], need_statistics: int) -> bool:
        """Start from the first answer's model, if enough answers agree on the statistics."""
        if not answers:
            return False
        peer, round, tensors, statistics = answers[0]
        if need_statistics:
            if sum(a[3] == statistics for a in answers) < need_statistics or not statistics:
                return False
            agreed = Statistics.from_dict(json.loads(statistics), self.learner.table.table.columns)
            self.data = self.learner.data = self.learner.table.prepare(agreed)
            self.exchange = None
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(tensors[name])
        self.machine.join_at(round, tensors)
        self.joining = False
        self.log.info("joined", round=round, model_from=self.names[peer])
        self._audit("joined", round=round, peer=self.names[peer])
        return True

    async def _on_model_request(self, stream) -> None:
        """Serve this node's model at the start of its round to a member joining mid-run."""
        peer = await self._admitted(stream, self.model_streams, quorum.MAX_HELLOS, "model request")
        if peer is None:
            return
        round, params = self.machine.round, self.machine.params
        statistics = b"" if self.learner.table.source.shared else json.dumps(
            self.data.statistics.to_dict(), sort_keys=True).encode()

        def build():
            return encode(self.key, round=round, fingerprint=self.fingerprint,
                          num_samples=len(self.data.y_train), weight=1.0, tensors=params, metrics={},
                          encoding="dense",
                          consortium=self.membership.at(round).consortium)

        try:
            await joining.serve(stream, await trio.to_thread.run_sync(build), statistics, self.timeouts)
        except Exception as exc:  # noqa: BLE001 - the joiner went away
            await self._transfer_failed(stream, peer, exc)
        finally:
            self.model_streams[peer] -= 1
