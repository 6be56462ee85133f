"""The node daemon: drives the round state machine over libp2p with trio.

Everything the protocol decides comes from `RoundMachine`; this module only carries out its
actions: local training, codec and averaging in worker threads (so stream reads never stall
and Yamux never times out), sends and receives as concurrent tasks with a timeout on every
network wait, a deadline per round, atomic checkpoints and a metrics line per round.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import math
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import trio

from p2pfl.atomic import write_atomic
from p2pfl.errors import (
    BAD_INPUT,
    EXIT_NO_QUORUM,
    EXIT_OK,
    InUseError,
    StateWriteError,
    UserError,
)
from p2pfl.evaluation.metrics import training_metrics
from p2pfl.learning.privacy import dp_train_steps
from p2pfl.learning.trainer import probabilities, train_steps
from p2pfl.net import admin, checkpoint, quorum, snapshots, transfer
from p2pfl.net.assembly import Parts, assemble, load_node_key
from p2pfl.net.audit import AuditLog
from p2pfl.net.daemon_membership import MembershipMixin
from p2pfl.net.eventlog import EventLog
from p2pfl.net.host import (
    HELLO_PROTOCOL,
    MODEL_PROTOCOL,
    PROTOCOL,
    REPORT_PROTOCOL,
    ROSTER_PROTOCOL,
    STATS_PROTOCOL,
    STATUS_PROTOCOL,
    make_host,
    multiaddrs,
    peer_id,
    quiet_libp2p_logs,
)
from p2pfl.net.preprocessing import StatisticsExchange
from p2pfl.net.prometheus import NodeMetrics
from p2pfl.net.relay import Relaying
from p2pfl.net.reports import REPORT_FILE, ReportExchange, best_round_of, consortium_report, own_report
from p2pfl.net.status import NodeStatus
from p2pfl.net.status_gossip import StatusGossip
from p2pfl.protocol import hello
from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.consortium import check_consortium, differences
from p2pfl.protocol.messages import InvalidMessage, ProtocolViolation
from p2pfl.protocol.multiaddr import InvalidMultiaddr, parse_multiaddr
from p2pfl.protocol.roster import Roster
from p2pfl.protocol.rounds import (
    Aggregate,
    Checkpoint,
    Done,
    Held,
    Reject,
    Send,
    Train,
)
from p2pfl.protocol.status_line import State
from p2pfl.settings.node import NodeSettings

RETRY_PAUSE = 0.5  # seconds between delivery attempts to a peer that is not reachable yet
HEADER_ALLOWANCE = 1 << 20  # bytes an update may carry beyond its raw tensors
MAX_INBOUND = 3  # concurrent transfers per peer (rounds t .. t + max_ahead): bounds memory
STOP_GRACE = 1.5  # seconds a stop by signal may take to close the host


class Node(MembershipMixin):
    """One hospital's daemon. Build with `Node.from_settings` (or `Node.build`), run with
    `trio.run(node.run)`."""

    def __init__(self, parts: Parts, log: EventLog):
        """Run what `assembly.assemble` built (key, roster, learner, gossip, state folder)."""
        self.settings, self.log = parts.settings, log
        who, learner, gossip = parts.identity, parts.learner, parts.gossip
        self.key, self.roster, self.self_id, self.index = who.key, who.roster, who.self_id, who.index
        self.members = who.members  # of the era this node is in (p2pfl.net.membership)
        self.membership = gossip.membership
        self.names = self.membership.all_names()  # every member of every era held, for the logs
        self.learner = learner
        self.data, self.model, self.optimizer = learner.data, learner.model, learner.optimizer
        self.plan, self.privacy, self.specs = learner.plan, learner.privacy, learner.specs
        self.fingerprint, self.n_params = learner.fingerprint, learner.n_params
        self.topology, self.aggregator, self.format = gossip.topology, gossip.aggregator, gossip.format
        self.consortium, self.machine = gossip.consortium, gossip.machine  # of this era
        self.consortium_plan = gossip.plan  # the plan and roster sections, said in every hello
        self.era = self.membership.at(self.machine.round)
        self.joining = gossip.start_round < self.membership.eras[0].start  # admitted mid-run, no model yet
        self.roster_seen = self._roster_file_stamp()
        self.left: str | None = None  # why this node takes no further part (removed, key rotated)
        self.allowed = self._admitted_peers()  # the host's gate reads this set, by reference
        self.state_dir, self.state_lock = parts.state_dir, parts.state_lock
        g = self.settings.gossip
        rt = g.round_timeout
        self.timeouts = transfer.Timeouts(connect=min(10.0, rt), chunk=min(30.0, rt), ack=min(60.0, 2 * rt))
        # An update is this model's tensors plus a header: refuse anything much larger before
        # reading it (and never above gossip.max_update_mb).
        self.max_bytes = min(int(g.max_update_mb * 1e6), 4 * self.n_params + HEADER_ALLOWANCE)
        self.receiving: dict[str, int] = {}  # transfers in progress, per peer
        self.hellos: dict[str, int] = {}  # inbound hellos in progress, per peer
        self.pulls: dict[str, int] = {}  # inbound statistics pulls in progress, per peer
        self.report_streams: dict[str, int] = {}  # inbound site reports in progress, per peer
        self.roster_streams: dict[str, int] = {}  # inbound roster versions in progress, per peer
        self.model_streams: dict[str, int] = {}  # inbound model requests in progress, per peer
        self.status_streams: dict[str, int] = {}  # inbound status pushes in progress, per peer
        self.reports = ReportExchange(self.key, self.consortium.id, self.index, self.members,
                                      self.names, log, self.timeouts)
        self.finished = False  # every round done (not stopped by a signal or an error)
        self.prometheus = NodeMetrics(self._peers_connected) if self.settings.node.metrics_listen else None
        self.audit = AuditLog(self.state_dir)  # every update sent, accepted or refused; start, stop
        rounds = self.settings.training.rounds
        self.status = NodeStatus(self.settings.node.name, [self.names[p] for p in self.members], rounds)
        self.status.roster_version = self.era.version.version
        self.status_gossip = StatusGossip(self.key, self.consortium.id, self.index, self.members,
                                          self.names, rounds, self.status, log, self.timeouts)
        for era in self.membership.eras:
            self.status_gossip.know(era.consortium.id, era.members)
        self.exchange = (StatisticsExchange(self.key, self.consortium.id, self.index, self.members,
                                            self.names, learner.table.statistics, log, self.timeouts)
                         if learner.agree else None)
        self.wire_events: dict[int, trio.Event] = {}
        self.stats: dict[int, dict[str, float]] = {}
        self.done = trio.Event()
        self.stopping = threading.Event()  # a signal or a failed write: stop now, training included
        self.exit_code = EXIT_OK
        self.model_lock = trio.Lock()
        self.sends_in_flight = 0
        self.asynchronous = self.settings.gossip.mode == "async"
        self.overlapping = self.settings.gossip.mode == "overlap"  # the send comes before training
        self.mailbox: dict[str, Outgoing] = {}  # async: the newest update to send each peer
        self.host = None
        self.nursery: trio.Nursery | None = None

    def epsilon(self, rounds: int) -> float:
        """Privacy spent after `rounds` rounds of DP-SGD, at privacy.delta."""
        return self.learner.epsilon(rounds)

    @classmethod
    def build(cls, settings: NodeSettings, key, roster: Roster | None, log: EventLog) -> Node:
        """A node of these settings with this key and roster (None: the roster versions of the
        configured file and the state folder; see p2pfl.net.assembly)."""
        return cls(assemble(settings, key, roster, log), log)

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> Node:
        """Load the key (passphrase from the named environment variable) and the roster
        versions, and build."""
        log = EventLog(settings.node.name, fmt=settings.node.log_format)
        return cls.build(settings, load_node_key(settings), None, log)

    # -- main loop ------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until every round is done, SIGINT/SIGTERM or a failed state write; returns the
        exit code. The last good checkpoint is always kept."""
        quiet_libp2p_logs()
        from libp2p.custom_types import TProtocol

        # torch and the data are loaded: freeze them out of the cyclic GC, so that the objects of
        # a large received header do not set off a full collection over them (~70 ms measured)
        gc.collect()
        gc.freeze()

        outbound = self.settings.node.reachability == "outbound"  # listens nowhere (p2pfl.net.relay)
        if not outbound:
            _check_listen(self.settings.node.listen)
        self.host = make_host(self.key, allowed=self.allowed, on_refused=self._stranger,
                              on_ip_refused=self._ip_refused)
        self.relaying = Relaying(self.host, self.roster, self.self_id, self.log, self.allowed)
        self.host.set_stream_handler(TProtocol(PROTOCOL), self._on_stream)
        self.host.set_stream_handler(TProtocol(HELLO_PROTOCOL), self._on_hello)
        self.host.set_stream_handler(TProtocol(REPORT_PROTOCOL), self._on_report)
        self.host.set_stream_handler(TProtocol(STATUS_PROTOCOL), self._on_status)
        self.host.set_stream_handler(TProtocol(ROSTER_PROTOCOL), self._on_roster)
        self.host.set_stream_handler(TProtocol(MODEL_PROTOCOL), self._on_model_request)
        if self.exchange is not None:
            self.host.set_stream_handler(TProtocol(STATS_PROTOCOL), self._on_statistics)
        listen = [] if outbound else multiaddrs([self.settings.node.listen])
        if self.prometheus is not None:
            self.prometheus.serve(self.settings.node.metrics_listen)
        self.audit.record("start", peer_id=self.self_id, round=self.machine.round,
                          consortium=self.consortium.id.hex(),
                          sections=[f"{n}:{d.hex()}" for n, d in sorted(self.consortium.sections.items())])
        try:
            code = await self._serve(listen)
            self._audit("stop", exit_code=code, round=self.machine.round)
            return code
        finally:
            self.audit.close()
            if self.prometheus is not None:
                self.prometheus.close()

    async def _serve(self, listen) -> int:
        """Listen, start together, train every round, end (see `run`)."""
        async with self.host.run(listen_addrs=listen), trio.open_nursery() as nursery:
            if listen and not self.host.get_addrs():
                raise InUseError(f"node.listen {self.settings.node.listen}: could not listen there")
            self.nursery = nursery
            self.log.info("listening", addrs=",".join(str(a) for a in self.host.get_addrs()) or "none",
                          reachability=self.settings.node.reachability, relay=self.settings.node.relay)
            await nursery.start(self.relaying.serve, self.settings.node.relay, not listen)
            nursery.start_soon(self._watch_signals)
            await nursery.start(self._serve_admin)
            self.status_gossip.start(nursery, self._opener(STATUS_PROTOCOL))
            if self.joining:
                await self._join()
            await self._start_quorum()
            if self.exchange is not None and not self.done.is_set():
                await self._agree_statistics()
            if not self.done.is_set():
                await self._dispatch(self.machine.start())
            await self.done.wait()
            # finished: let the last sends reach the neighbours (a signal cuts this short)
            with trio.move_on_after(self.timeouts.ack):
                while self.sends_in_flight and not self.stopping.is_set():
                    await trio.sleep(0.05)
            if self.finished and not self.stopping.is_set() and self.left is None:
                with trio.CancelScope() as scope:
                    nursery.start_soon(_cancel_on_stop, self.stopping, scope)
                    await self._end_of_training()
                    if self.settings.node.relay:  # the members it relays for may still report
                        await self.relaying.linger(self.settings.gossip.report_timeout)
            self._set_state(State.DONE if self.finished else State.STOPPED)
            nursery.cancel_scope.cancel()
            with trio.move_on_after(STOP_GRACE):
                await transfer.quietly(self.host.close())
        self.log.flush_suppressed()
        return self.exit_code

    async def _start_quorum(self) -> None:
        """At round 0, wait for gossip.min_peers in-neighbours (p2pfl.net.quorum); a stop by
        signal ends the wait, a timeout stops the node with EXIT_NO_QUORUM."""
        g = self.settings.gossip
        peers = self.machine.in_peers(0)
        need = quorum.needed(g.min_peers, peers)
        if self.machine.round > 0 or need == 0:
            return
        self._set_state(State.WAITING_FOR_PEERS)
        reached = False
        with trio.CancelScope() as scope:
            self.nursery.start_soon(_cancel_when, self.done, scope)
            reached = await quorum.gather(peers, need, self._greet, self.names, self.log, g.start_timeout)
        if not reached and not self.stopping.is_set():
            self._stop(EXIT_NO_QUORUM)

    async def _greet(self, peer: str) -> str | None:
        """Say hello to `peer`: None if it answered with this consortium, else what differs."""
        pid = await self._connect(peer)
        raw = await quorum.say_hello(self.host, pid, self._hello(hello.Role.HELLO, peer), self.timeouts)
        try:
            theirs = hello.parse(raw, sender=peer, recipient=self.self_id, role=hello.Role.REPLY)
        except InvalidMessage as exc:
            self.log.warn_limited("hello_rejected", peer, peer=self.names[peer], reason=str(exc))
            raise
        return differences(theirs.consortium.id, theirs.consortium.sections, self.consortium,
                           theirs.plan, self.consortium_plan)

    # -- agreeing on the preprocessing statistics (p2pfl.net.preprocessing) --------------------

    async def _agree_statistics(self) -> None:
        """Collect every member's signed statistics over the topology, then preprocess this
        node's rows with their pooled statistics (the same at every member, bit for bit)."""
        rounds = 1 if not self.topology.time_varying else min(self.settings.training.rounds, 64)
        peers = sorted({p for r in range(rounds) for p in self.machine.in_peers(r)})  # connected
        self._set_state(State.AGREEING_STATISTICS)
        agreed = None
        with trio.CancelScope() as scope:
            self.nursery.start_soon(_cancel_when, self.done, scope)
            agreed = await self.exchange.agree(peers, self._opener(STATS_PROTOCOL),
                                               self.settings.gossip.start_timeout)
        if agreed is None:
            if not self.stopping.is_set() and not scope.cancelled_caught:
                self._stop(EXIT_NO_QUORUM)
            return
        self.data = self.learner.data = await trio.to_thread.run_sync(self.learner.table.prepare, agreed)
        self.log.info("preprocessing_agreed", members=len(self.members), rows=agreed.rows,
                      own_rows=self.exchange.own.rows)
        self._audit("statistics_agreed", members=len(self.members), rows=agreed.rows,
                    own_rows=self.exchange.own.rows)

    async def _on_statistics(self, stream) -> None:
        """Answer a member's pull (p2pfl.net.preprocessing)."""
        peer = await self._admitted(stream, self.pulls, quorum.MAX_HELLOS, "statistics pull")
        if peer is None:
            return
        try:
            await self.exchange.answer(stream, peer)
        finally:
            self.pulls[peer] -= 1

    # -- the end of training: site reports, the best round (p2pfl.net.reports) ---------------

    async def _end_of_training(self) -> None:
        """Send this site's report to every member, collect theirs, write consortium_report.json
        and, when the plan selects one, the best round's model (best.pt)."""
        own = await trio.to_thread.run_sync(self._own_report)
        await self.reports.exchange(own, self._opener(REPORT_PROTOCOL), self.settings.gossip.report_timeout)
        await trio.to_thread.run_sync(self._write_reports)
        reported = [self.names[self.members[i]] for i in sorted(self.reports.reports)]
        self._audit("site_reports", reported=reported)

    def _own_report(self) -> dict:
        """This site's validation figures: its final model's, and each round's from metrics.jsonl."""
        probs = probabilities(self.model, self.data.x_val)
        return own_report(self.data.y_val.numpy(), probs, len(self.data.y_train),
                          checkpoint.read_metrics(self.state_dir), self.settings.training.rounds)

    def _write_reports(self) -> None:
        select = self.settings.training.select
        choice = best_round_of(self.reports.reports, self.members, select) if select else None
        report = consortium_report(self.reports.reports, self.members, self.names, self.consortium.id,
                                   select, choice)
        try:
            write_atomic(self.state_dir / REPORT_FILE, json.dumps(report, indent=1) + "\n")
            if choice is not None:
                kept = snapshots.keep_best(self.state_dir, choice.round)
                self.log.info("best_round", round=kept, metric=select, score=round(choice.score, 4),
                              members=choice.members)
        except OSError as exc:
            self.log.error("state_write_failed", error=str(exc), effect="no consortium report")
        self.log.info("consortium_report", sites=sum(s["status"] == "reported" for s in report["sites"]),
                      members=len(self.members), file=REPORT_FILE)

    async def _serve_admin(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The admin endpoint `p2pfl status` asks (p2pfl.net.admin); a node that cannot open it
        runs on without it (status then reads the state folder)."""
        try:
            await admin.serve(self.state_dir, self.status.snapshot, task_status=task_status)
        except OSError as exc:
            self.log.warn("admin_endpoint_off", path=str(admin.socket_path(self.state_dir)),
                          reason=exc.strerror or str(exc), effect="p2pfl status reads the state folder")
            task_status.started()

    def _set_state(self, state: State) -> None:
        """This node's state changed: keep it for `p2pfl status` and tell the members."""
        if state == self.status.state and self.machine.round == self.status.round:
            return
        self.status.set(state, self.machine.round)
        self.status_gossip.say(self.machine.round, state, self._neighbours())

    def _neighbours(self) -> list[str]:
        """The members this node exchanges with in its current round (in or out)."""
        r = min(self.machine.round, max(0, self.settings.training.rounds - 1))
        return sorted(set(self.machine.in_peers(r)) | set(self.machine.out_peers(r)))

    async def _on_status(self, stream) -> None:
        """Keep a member's pushed status lines and pass the new ones on (p2pfl.net.status_gossip)."""
        peer = await self._admitted(stream, self.status_streams, quorum.MAX_HELLOS, "status push")
        if peer is None:
            return
        try:
            new = await self.status_gossip.answer(stream, peer)
        except Exception as exc:  # noqa: BLE001 - a bad push: one line, reset, go on
            await self._transfer_failed(stream, peer, exc)
            return
        finally:
            self.status_streams[peer] -= 1
        self.status_gossip.spread(new, self._neighbours(), came_from=peer)

    def _opener(self, protocol: str):
        """A function that opens a stream of `protocol` to a member, connecting first."""
        async def open_stream(peer: str):
            pid = await self._connect(peer)
            with trio.fail_after(self.timeouts.connect):
                return await self.host.new_stream(pid, [protocol])
        return open_stream

    async def _on_report(self, stream) -> None:
        """Keep a member's site report (p2pfl.net.reports)."""
        peer = await self._admitted(stream, self.report_streams, quorum.MAX_HELLOS, "site report")
        if peer is None:
            return
        try:
            await self.reports.answer(stream, peer)
        finally:
            self.report_streams[peer] -= 1

    def _hello(self, role: hello.Role, peer: str) -> bytes:
        """This node's signed hello (or reply) for `peer`: its consortium, plan and roster."""
        return hello.pack(self.key, self.consortium, self.consortium_plan, role, recipient=peer)

    async def _on_hello(self, stream) -> None:
        """Answer a member's hello with this node's consortium; name what differs, if anything."""
        peer = await self._admitted(stream, self.hellos, quorum.MAX_HELLOS, "hello")
        if peer is None:
            return
        try:
            theirs = hello.parse(await quorum.read_hello(stream, self.timeouts), sender=peer,
                                 recipient=self.self_id, role=hello.Role.HELLO)
            mine = self._hello(hello.Role.REPLY, peer)
            await transfer.write_all(stream, hello.frame(mine), self.timeouts)
            await stream.close()
        except Exception as exc:  # noqa: BLE001 - a bad hello: one line, reset, go on
            self.log.warn_limited("hello_rejected", peer, peer=self.names[peer], reason=_reason(exc))
            await transfer.reset(stream)
            return
        finally:
            self.hellos[peer] -= 1
        reason = differences(theirs.consortium.id, theirs.consortium.sections, self.consortium,
                             theirs.plan, self.consortium_plan)
        if reason is not None:
            self.log.warn_limited("consortium_mismatch", peer, peer=self.names[peer], reason=reason)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.log.info("stopping", signal=signal.Signals(signum).name, round=self.machine.round)
                self._stop(EXIT_OK)
                return

    def _stop(self, code: int) -> None:
        """Stop now: training ends after its current step, no new round starts."""
        if not self.stopping.is_set():
            self.exit_code = code
        self.stopping.set()
        self.done.set()

    def _stranger(self, peer: str, reason: str) -> None:
        self.log.warn_limited("stranger_refused", peer, peer_id=peer, reason=reason)

    def _ip_refused(self, ip: str, reason: str) -> None:
        self.log.warn_limited("connection_refused", ip, ip=ip, reason=reason)

    async def _dispatch(self, actions: list) -> None:
        for action in actions:
            if self.stopping.is_set():
                return
            if isinstance(action, Train):
                self.nursery.start_soon(self._train, action)
            elif isinstance(action, Send):
                self.nursery.start_soon(self._send_all, action)
            elif isinstance(action, Aggregate):
                self.nursery.start_soon(self._aggregate, action)
            elif isinstance(action, Checkpoint):
                await self._checkpoint(action)
            elif isinstance(action, Done):
                self.finished = True
                self._leave_if_not_member(action.round)
                self.log.info("done", round=action.round)
                self._set_state(State.REPORTING)
                self.done.set()
            elif isinstance(action, Reject):
                fields = dict(sender=self.names.get(action.sender, action.sender), round=action.round,
                              reason=action.reason)
                if action.dropped:
                    self.log.info("update_dropped", **fields)
                else:
                    self.log.warn_limited("update_rejected", f"{action.sender} {action.reason}", **fields)
            elif isinstance(action, Held):
                self.log.warn_limited("catch_up_evidence", action.sender, sender=self.names[action.sender],
                                      round=action.round, this_round=self.machine.round,
                                      witnesses=action.witnesses, quorum=action.quorum)

    # -- actions --------------------------------------------------------------------------

    async def _train(self, action: Train) -> None:
        start = time.monotonic()
        self._set_state(State.TRAINING)
        async with self.model_lock:
            steps = self.plan.round(action.round)
            batches = [s.index[self.data.plan_row] for s in steps]
            loss = await trio.to_thread.run_sync(self._train_sync, action.round, action.params, batches)
        if self.stopping.is_set():
            return
        trained = time.monotonic()
        self.stats.setdefault(action.round, {}).update(
            start=start, train_loss=loss, train_seconds=trained - start, trained=trained)
        if self.overlapping:  # the wait for the neighbours begins now, not at the send
            self.nursery.start_soon(self._deadline, action.round)
        await self._dispatch(self.machine.local_model_ready(action.round, self._params()))

    def _train_sync(self, round: int, params: dict[str, torch.Tensor], batches: list[np.ndarray]) -> float:
        """Local steps, one at a time so that a stop is seen within one step."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(params[name])
        x, y = self.data.x_train, self.data.y_train
        noise = None
        if self.privacy.noise > 0:
            seed = (self.settings.training.seed * 1_000_003 + self.index) * 1_000_003 + round
            noise = torch.Generator().manual_seed(seed)
        losses = []
        for batch in batches:
            if self.stopping.is_set():
                break
            if noise is not None:
                losses.append(dp_train_steps(self.model, self.optimizer, x, y, [batch], self.privacy.clip,
                                             self.privacy.noise, generator=noise))
            else:
                losses.append(train_steps(self.model, self.optimizer, x, y, [batch]))
        return sum(losses) / len(losses) if losses else float("nan")

    async def _send_all(self, action: Send) -> None:
        loss = self.stats.get(action.round, {}).get("train_loss")  # None: sent before training

        def build():
            tensors, encoding = self.format.encoder.encode(action.round, action.params)
            return encode(self.key, round=action.round, fingerprint=self.fingerprint,
                          num_samples=len(self.data.y_train), weight=1.0, tensors=tensors,
                          metrics={} if loss is None else {"train_loss": loss}, encoding=encoding,
                          consortium=self.membership.at(action.round).consortium)

        out = Outgoing(action.round, await trio.to_thread.run_sync(build))
        self._set_state(State.EXCHANGING)
        self._wired(action.round).set()
        if self.asynchronous:
            for peer in action.peers:
                self._post(peer, out)
            return
        for peer in action.peers:
            self.nursery.start_soon(self._send_one, peer, out)
        if not self.overlapping:
            self.nursery.start_soon(self._deadline, action.round)

    def _post(self, peer: str, out: Outgoing) -> None:
        """Async gossip: send `peer` this update, or, while one to it is on the way, send this
        one after it instead of any older one waiting (a peer gets the newest, one at a time)."""
        if self.status_gossip.is_done(peer):
            return  # it finished every round: it reads no more updates
        waiting = peer in self.mailbox
        self.mailbox[peer] = out
        if not waiting:
            self.nursery.start_soon(self._drain, peer)

    async def _drain(self, peer: str) -> None:
        while peer in self.mailbox:
            out = self.mailbox[peer]
            await self._send_one(peer, out)
            if self.mailbox.get(peer) is out:
                del self.mailbox[peer]

    async def _deadline(self, round: int) -> None:
        await trio.sleep(self.settings.gossip.round_timeout)
        await self._dispatch(self.machine.deadline_passed(round))

    async def _send_one(self, peer: str, out: Outgoing) -> None:
        """Deliver one update, retrying (a peer that is starting or restarting) until the
        round deadline."""
        round, data = out.round, out.data
        self.sends_in_flight += 1
        give_up = trio.current_time() + self.settings.gossip.round_timeout
        try:
            while True:
                try:
                    ack = await self._deliver(peer, round, data)
                    self._count(round, "bytes_out", len(data))
                    self._audit("update_sent", round=round, peer=self.names[peer],
                                digest=await out.digest(), ack=ack.name.lower())
                    if ack is transfer.Ack.DROPPED:
                        self.log.info("send_dropped", peer=self.names[peer], round=round)
                    return
                except transfer.Refused as exc:  # the peer checked it and said why: a retry won't help
                    self.log.warn_limited("send_rejected", peer, peer=self.names[peer], round=round,
                                          reason=str(exc))
                    self._audit("update_sent", round=round, peer=self.names[peer],
                                digest=await out.digest(), ack="refused",
                                reason=str(exc))
                    return
                except Exception as exc:  # noqa: BLE001 - a failed peer must never stop this node
                    failed = isinstance(exc, transfer.TransferError)
                    if failed or trio.current_time() + RETRY_PAUSE >= give_up:
                        self.log.warn("send_failed", peer=self.names[peer], round=round, reason=_reason(exc))
                        return
                await trio.sleep(RETRY_PAUSE)
        finally:
            self.sends_in_flight -= 1

    async def _deliver(self, peer: str, round: int, data) -> transfer.Ack:
        stream = None
        try:
            pid = await self._connect(peer)
            with trio.fail_after(self.timeouts.connect):
                stream = await self.host.new_stream(pid, [PROTOCOL])
            ack = await transfer.send(stream, round, data, self.timeouts)
            await stream.close()
            return ack
        except BaseException:
            if stream is not None:
                await transfer.reset(stream)
            raise

    async def _connect(self, peer: str):
        """Connect if not connected: at the member's roster addresses, or through a relay
        member for a member reached that way (p2pfl.net.relay)."""
        await self.relaying.connect(self.membership.member(peer), self.timeouts.connect)
        return peer_id(peer)

    async def _on_stream(self, stream) -> None:
        peer = await self._admitted(stream, self.receiving, MAX_INBOUND, "transfer")
        if peer is None:
            return
        try:
            try:
                round, payload = await transfer.receive(stream, self.max_bytes, self.timeouts,
                                                        lambda r: self._refused(peer, r))
            except Exception as exc:  # noqa: BLE001 - any bad transfer: log one line, reset, go on
                await self._transfer_failed(stream, peer, exc)
                return
            self._count(round, "bytes_in", len(payload))
            code, reason, actions = await self._check(peer, round, payload)
            digest = await trio.to_thread.run_sync(_digest, payload)
            self._verdict(code.name.lower(), peer, round, reason, digest=digest)
        finally:
            self.receiving[peer] -= 1
        try:
            await transfer.reply(stream, code, reason, self.timeouts)
        except Exception as exc:  # noqa: BLE001 - the sender went away: its update still counts
            await self._transfer_failed(stream, peer, exc)
        await self._dispatch(actions)  # the machine has moved: its actions must run in any case

    async def _admitted(self, stream, in_progress: dict[str, int], limit: int, kind: str) -> str | None:
        """The sending member's peer ID, counted in `in_progress` (the caller counts it down);
        None, the stream reset, for a stranger or a member with `limit` such streams open."""
        peer = stream.muxed_conn.peer_id.to_base58()
        if peer not in self.allowed:  # the host's gate refuses strangers; this is defence in depth
            self._stranger(peer, "peer ID not in the roster")
            await transfer.reset(stream)
            return None
        if in_progress.get(peer, 0) >= limit:
            self.log.warn_limited(f"{kind}_refused", peer, peer=self.names[peer],
                                  reason=f"{limit} {kind}s from it are in progress")
            await transfer.reset(stream)
            return None
        in_progress[peer] = in_progress.get(peer, 0) + 1
        return peer

    async def _transfer_failed(self, stream, peer: str, exc: Exception) -> None:
        reason = _reason(exc)
        self.log.warn_limited("transfer_failed", f"{peer} {reason}", peer=self.names[peer], reason=reason)
        await transfer.reset(stream)

    async def _check(self, peer: str, round: int, payload) -> tuple[transfer.Ack, str, list]:
        """The verdict on a received update (for the ack) and the machine's actions. Checked in
        order: signature (with the sender's key, before the header is parsed), sender,
        consortium, round, then the model (in the machine)."""
        try:
            update = await trio.to_thread.run_sync(decode, payload, self.max_bytes, peer)
            if update.round != round:
                raise ProtocolViolation(f"transfer header says round {round}, "
                                        f"the signed update {update.round}")
            check_consortium(update, self.membership.at(update.round).consortium)
        except InvalidMessage as exc:
            self.log.warn_limited("update_rejected", f"{peer} {exc}", sender=self.names[peer],
                                  round=round, reason=str(exc))
            return transfer.Ack.REJECTED, str(exc), []
        actions = self.machine.update_received(update)
        verdict = next((a for a in actions if isinstance(a, Reject) and a.sender == peer), None)
        if verdict is None:
            return transfer.Ack.ACCEPTED, "", actions
        return (transfer.Ack.DROPPED if verdict.dropped else transfer.Ack.REJECTED), verdict.reason, actions

    def _refused(self, peer: str, round: int) -> str | None:
        """`_refuse`, counted for Prometheus."""
        why = self._refuse(peer, round)
        if why is not None:
            self._verdict("refused", peer, round, why)
        return why

    def _verdict(self, result: str, peer: str, round: int, reason: str, **fields: object) -> None:
        """A received update was accepted, refused, rejected or dropped: count it for
        Prometheus, `p2pfl status` and the audit log."""
        if self.prometheus is not None:
            self.prometheus.update(result, reason)
        if result == "accepted":
            self.status.heard(self.names[peer], round, "update")
        else:
            self.status.refused(result, reason)
        self._audit(f"update_{result}", round=round, peer=self.names[peer], reason=reason, **fields)

    def _audit(self, event: str, **fields: object) -> None:
        """One audit.jsonl line; a failed write stops the node like a failed checkpoint (exit 3)."""
        try:
            self.audit.record(event, **fields)
        except StateWriteError as exc:
            if not self.stopping.is_set():
                self.log.error("state_write_failed", error=str(exc), exit_code=exc.exit_code,
                               effect="stopping; the audit log must not miss an event")
                self._stop(exc.exit_code)

    def _peers_connected(self) -> int:
        """Roster members with an open connection (Prometheus asks, from its thread)."""
        try:
            connected = list(self.host.get_network().connections)
            return sum(1 for pid in connected if pid.to_base58() in self.names)
        except Exception:  # noqa: BLE001 - no host yet, or the library changed: report none
            return 0

    def _refuse(self, peer: str, round: int) -> str | None:
        """Why an announced update is not worth reading (checked before the payload)."""
        return self.machine.refusal(peer, round)

    def _wired(self, round: int) -> trio.Event:
        """Set once this round's own update is built (CHOCO: own public copy updated)."""
        for old in [r for r in self.wire_events if r < round - 1]:
            del self.wire_events[old]
        return self.wire_events.setdefault(round, trio.Event())

    async def _aggregate(self, action: Aggregate) -> None:
        await self._wired(action.round).wait()  # CHOCO mixes with this round's own public copy
        new, combined = await trio.to_thread.run_sync(self.format.combiner.combine, action)
        if not combined:
            self.log.warn("too_few_updates", round=action.round, arrived=len(action.states) - 1,
                          aggregator=str(self.aggregator), action="kept own model")
        stats = self.stats.setdefault(action.round, {})
        stats["aggregating"] = time.monotonic()
        stats["heard"] = [self.names[p] for p in action.senders]
        stats["missing"] = [self.names[p] for p in action.missing]
        await self._dispatch(self.machine.aggregated(action.round, new))

    async def _checkpoint(self, action: Checkpoint) -> None:
        """Write the checkpoint and the metrics rows of the rounds it ends (shielded: a stop
        never splits them; the checkpoint carries its last row, so a crash between the two
        is repaired at start)."""
        first = action.round - 1 if action.caught_up_from is None else action.caught_up_from
        stats = {r: self.stats.pop(r, {}) for r in range(first, action.round)}
        with trio.CancelScope(shield=True):
            async with self.model_lock:
                try:
                    rows = await trio.to_thread.run_sync(self._save_sync, action, stats)
                except StateWriteError as exc:
                    self.log.error("state_write_failed", error=str(exc), exit_code=exc.exit_code,
                                   effect="stopping; the last good checkpoint is kept")
                    self._stop(exc.exit_code)
                    return
        if self.prometheus is not None:
            for written in rows:
                self.prometheus.row(written)
        row = rows[-1]
        self.status.row(row)
        self.status.round = self.machine.round
        await self._roster_file_changed()
        if self.membership.at(self.machine.round) is not self.era:
            await self._enter_era(self.membership.at(self.machine.round))
        if action.caught_up_from is not None:
            self.log.warn("rounds_skipped", first=action.caught_up_from, last=action.round - 1,
                          on_word_of=",".join(row["on_word_of"]), now_at=action.round)
        self.log.info("round_done", round=row["round"], val_accuracy=row["val_accuracy"],
                      train_loss=row["train_loss"], heard=len(row["heard_from"]),
                      missing=",".join(row["missing"]) or "-", seconds=row["seconds"],
                      **({"epsilon": row["epsilon"]} if row["epsilon"] else {}))

    def _save_sync(self, action: Checkpoint, stats: dict[int, dict]) -> list[dict[str, object]]:
        """Rows of the ended rounds, then the checkpoint holding the last one, then that row."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(action.params[name])
        probs = probabilities(self.model, self.data.x_val)
        figures = training_metrics(self.data.y_val.numpy(), probs)
        witnesses = [self.names[p] for p in action.witnesses]
        rows = [self._metrics_row(r, stats[r], figures, witnesses if action.caught_up_from is not None
                                  else None) for r in sorted(stats)]
        for row in rows[:-1]:
            checkpoint.append_metrics(self.state_dir, row)
        checkpoint.save(self.state_dir, action.round, self.model, self.optimizer, metrics_row=rows[-1],
                        preprocessing=self.data.statistics.to_dict())
        if self.settings.training.select:  # each round's model, until the best is chosen
            snapshots.save(self.state_dir, rows[-1]["round"], self.model, self.data.statistics.to_dict(),
                           rows[-1])
        checkpoint.append_metrics(self.state_dir, rows[-1])
        return rows

    def _metrics_row(self, ended: int, stats: dict, figures: dict[str, float],
                     skipped_for: list[str] | None) -> dict[str, object]:
        """The metrics.jsonl line of round `ended`; `skipped_for`: the witnesses of a catch-up
        that skipped it (None if the round ended normally)."""
        seconds = round(time.monotonic() - stats["start"], 3) if "start" in stats else None
        return {
            "round": ended,
            "skipped": skipped_for is not None,
            "on_word_of": skipped_for or [],
            "train_loss": stats.get("train_loss"),
            "train_seconds": round(stats["train_seconds"], 4) if "train_seconds" in stats else None,
            "val_accuracy": figures["accuracy"],
            "val_balanced_accuracy": _finite(figures["balanced_accuracy"]),
            "val_auroc": _finite(figures["auroc"]),
            "heard_from": stats.get("heard", []),
            "missing": stats.get("missing", []),
            "bytes_in": int(stats.get("bytes_in", 0)),
            "bytes_out": int(stats.get("bytes_out", 0)),
            "wait_seconds": _span(stats, "trained", "aggregating"),
            "epsilon": round(self.epsilon(ended + 1), 4) if self.privacy.noise > 0 else None,
            "seconds": seconds,
        }

    def _count(self, round: int, key: str, n: int) -> None:
        stats = self.stats.setdefault(round, {})
        stats[key] = stats.get(key, 0) + n

    def _params(self) -> dict[str, torch.Tensor]:
        return self.learner.params()


def run_node(settings: NodeSettings) -> int:
    """Build and run a node; returns the exit code (see p2pfl.errors)."""
    node = Node.from_settings(settings)
    try:
        return trio.run(node.run)
    except BaseExceptionGroup as group:  # trio nurseries wrap what escaped a task
        raise _user_error(group) from None


def _user_error(group: BaseExceptionGroup) -> BaseException:
    """The bad-input error that ended the node (one line for the CLI), or `group` itself if a bug."""
    for leaf in group.exceptions:
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, BAD_INPUT):
            return leaf
    return group


def _check_listen(listen: str) -> None:
    """py-libp2p 0.8.1 listens on nothing, silently, when the port is taken: bind it first to
    say so (the host binds with SO_REUSEADDR too, so a port in TIME_WAIT is not refused)."""
    try:
        parts = dict(parse_multiaddr(listen))
    except InvalidMultiaddr as exc:
        raise UserError(f"node.listen {listen}: {exc}") from None
    host = parts.get("ip4") or parts.get("ip6")
    if host is None or parts.get("tcp", "0") == "0":
        return
    family = socket.AF_INET if "ip4" in parts else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(parts["tcp"])))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InUseError(f"node.listen {listen}: the address is already in use (another node "
                                 "or program listens there)") from None
            raise UserError(f"node.listen {listen}: cannot listen there ({exc.strerror})") from None


def _span(stats: dict, a: str, b: str) -> float | None:
    return round(stats[b] - stats[a], 4) if a in stats and b in stats else None


@dataclass
class Outgoing:
    """One signed update to send: its round and bytes. Their SHA-256 for the audit log is taken
    after the first delivery (off the sending path) and reused for every other peer."""

    round: int
    data: object
    _digest: str | None = None
    _hashing: trio.Lock = field(default_factory=trio.Lock)

    async def digest(self) -> str:
        async with self._hashing:
            if self._digest is None:
                self._digest = await trio.to_thread.run_sync(_digest, self.data)
        return self._digest


def _digest(data) -> str:
    """SHA-256 of an update's bytes, for the audit log."""
    return hashlib.sha256(data).hexdigest()


def _finite(value: float) -> float | None:
    """A figure for JSON: None when undefined (an AUROC with one class present)."""
    return round(float(value), 6) if math.isfinite(value) else None


async def _cancel_on_stop(stopping: threading.Event, scope: trio.CancelScope) -> None:
    """Cancel `scope` once a signal or a failed write asks the node to stop."""
    while not stopping.is_set():
        await trio.sleep(0.1)
    scope.cancel()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()



def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

