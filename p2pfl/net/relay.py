"""Reaching members that cannot accept inbound connections: libp2p circuit relay v2 (py-libp2p 0.8.1).

A member with `node.reachability = "outbound"` listens nowhere. Its roster addresses are circuit
addresses through relay members (`/ip4/HOST/tcp/PORT/p2p/RELAY_ID/p2p-circuit`, checked in
p2pfl.protocol.roster), so every member knows to dial it through them and it knows where to
reserve:

- a relay member (`node.relay = true`) runs `RosterRelay`, the library's hop service serving
  roster members only: only a member may reserve (in its own name) or open a circuit, and only
  to a member;
- the outbound member runs `RelayedEnd` (relayed connections come in only from its own relays)
  and keeps a reservation on each relay (`Relaying.keep_reservations`): again after every
  reconnect and every REFRESH seconds, a relay that is down retried every RETRY seconds;
- a member dials it with `Relaying.connect`: `BasicHost.connect` drops /p2p-circuit addresses,
  so the circuit is dialled with `CircuitV2Transport.dial`, then Noise-upgraded end to end.

A relayed connection gets the same Noise + Yamux upgrade as a TCP one, through the same
`host.GatedNoise`: a stranger is refused right after the handshake there too. The relay copies
ciphertext it cannot read or alter; it sees who talks to whom, when and how much.
"""

from __future__ import annotations

import time

import trio
from libp2p.host.basic_host import BasicHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode, to_proto_status
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from p2pfl.net.eventlog import EventLog
from p2pfl.net.host import multiaddrs, peer_id
from p2pfl.protocol.multiaddr import check_circuit, is_circuit
from p2pfl.protocol.roster import Member, Roster

REFRESH = 600.0  # seconds between reservation refreshes (a reservation lasts an hour)
RETRY = 2.0  # seconds between attempts to reserve on a relay that is down or refused
POLL = 0.5  # seconds between checks that the connection to a relay is still open
RESERVE_TIMEOUT = 10.0  # seconds a reservation (connect, request, answer) may take
DENY_GRACE = 0.1  # seconds for a refusal's status to reach the peer before the reset


def limits(members: int) -> RelayLimits:
    """What a relay grants. `data` is a byte budget per circuit (both directions, its whole
    life), not a rate: py-libp2p 0.8.1 breaks every circuit when it is 0, so it is 1 TiB (a
    100 MB model both ways for 5,000 rounds). A circuit lasts at most a day (the dialer connects
    again); each member may reserve and receive a circuit from every other member."""
    return RelayLimits(duration=24 * 3600, data=1 << 40, max_circuit_conns=max(8, members),
                       max_reservations=max(4, members), reservation_ttl=3600)


class _Unbooked(dict):
    """The library's `_active_relays`, kept empty: it keys circuits by one peer, so the end of
    one circuit closed another one's streams (a second circuit to the same destination:
    tests/net/test_relay.py shows it). Each direction closes its own streams instead."""

    def __setitem__(self, key, value) -> None:
        pass


class RosterRelay(CircuitV2Protocol):
    """The hop service of a relay member: serves the Noise-authenticated peers in `allowed`
    (base58, kept by reference: a roster change takes effect at once). A reservation is made
    only in the sender's own name, a circuit only from and to a member; this node itself is
    never reached through a relay, so relayed connections into it (STOP) are refused."""

    def __init__(self, host: BasicHost, allowed: set[str], log: EventLog | None = None,
                 names: dict[str, str] | None = None):
        super().__init__(host, limits=limits(len(allowed)), allow_hop=True)
        self.allowed, self.log, self.names = allowed, log, names or {}
        self._active_relays = _Unbooked()

    def _name(self, pid: ID) -> str:
        return self.names.get(pid.to_base58(), pid.to_base58())

    async def _deny(self, stream, who: ID, reason: str) -> None:
        if self.log is not None:
            self.log.warn_limited("relay_refused", who.to_base58(), peer=self._name(who), reason=reason)
        with trio.move_on_after(2):
            await write_delimited_msg(stream, HopMessage(
                type=HopMessage.STATUS, status=to_proto_status(StatusCode.PERMISSION_DENIED)))
            await trio.sleep(DENY_GRACE)
        with trio.move_on_after(1):
            await stream.reset()

    async def _handle_hop_stream(self, stream) -> None:
        source = stream.muxed_conn.peer_id
        if source.to_base58() not in self.allowed:  # the host's gate refuses strangers; in depth
            await self._deny(stream, source, "peer ID not in the roster")
            return
        await super()._handle_hop_stream(stream)

    async def _handle_reserve(self, stream, msg) -> None:
        source = stream.muxed_conn.peer_id
        if msg.HasField("peer") and msg.peer.id and ID(msg.peer.id) != source:
            await self._deny(stream, source, "a reservation in another peer's name")
            return
        new = not self.resource_manager.has_reservation(source)
        await super()._handle_reserve(stream, msg)
        if new and self.resource_manager.has_reservation(source) and self.log is not None:
            self.log.info("relay_reserved", peer=self._name(source))

    async def _handle_connect(self, stream, msg) -> None:
        source = stream.muxed_conn.peer_id
        try:
            target = ID(msg.peer.id)
        except Exception:  # noqa: BLE001 - a malformed peer ID is a refused circuit
            await self._deny(stream, source, "a circuit to a malformed peer ID")
            return
        if target.to_base58() not in self.allowed:
            await self._deny(stream, source, "a circuit to a peer ID not in the roster")
            return
        if self.log is not None and self.resource_manager.can_accept_connection(target):
            self.log.info("relay_circuit", source=self._name(source), target=self._name(target))
        await super()._handle_connect(stream, msg)

    async def _relay_data(self, src, dst, peer, deadline=None, circuit_data_limit=None) -> None:
        try:
            await super()._relay_data(src, dst, peer, deadline, circuit_data_limit)
        finally:  # this direction ended: say so to the other side (a half close)
            await self._close_stream(dst)

    async def _handle_stop_stream(self, stream) -> None:
        with trio.move_on_after(1):
            await stream.reset()


class RelayedEnd(CircuitV2Protocol):
    """The STOP side of an outbound member: relayed connections come in only from `relays`
    (base58 peer IDs: the relays its own roster addresses name); the Noise upgrade over the
    circuit is bounded by the host's inbound upgrade timeout."""

    def __init__(self, host: BasicHost, relays: set[str], members: int):
        super().__init__(host, limits=limits(members), allow_hop=False)
        self.relays = relays

    async def _handle_stop_stream(self, stream) -> None:
        if stream.muxed_conn.peer_id.to_base58() not in self.relays:
            with trio.move_on_after(1):
                await stream.reset()
            return
        await super()._handle_stop_stream(stream)


class RelayError(Exception):
    """A reservation or a relayed dial that did not work; the text says why."""


class Relaying:
    """One node's part in circuit relay: connecting to members (through a relay where the roster
    says so), and, by `node.toml`, the relay service or the reservations of an outbound node."""

    def __init__(self, host: BasicHost, roster: Roster, self_id: str, log: EventLog | None = None,
                 allowed: set[str] | None = None):
        self.host, self.roster, self.self_id, self.log = host, roster, self_id, log
        self.allowed = allowed if allowed is not None else set(roster.peer_ids)
        self.names = {m.peer_id: m.name for m in roster}
        self.limits = limits(len(roster))
        self._transport: CircuitV2Transport | None = None
        self._dialing: dict[str, trio.Lock] = {}  # one relayed dial per member at a time
        self.reserved: dict[str, bool] = {}  # relay peer ID -> holds a reservation now

    # -- services ---------------------------------------------------------------------------

    async def serve(self, relay: bool, outbound: bool, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: the relay service (`relay`), or the relayed end and the
        reservations of an outbound node (`outbound`); started once they listen."""
        relays = dict.fromkeys(self.roster.by_peer_id(self.self_id).relays)  # in address order
        if relay:
            service = RosterRelay(self.host, self.allowed, self.log, self.names)
        elif outbound:
            service = RelayedEnd(self.host, set(relays), len(self.roster))
        else:
            task_status.started()
            return
        async with background_trio_service(service), trio.open_nursery() as nursery:
            await service.event_started.wait()
            for relay_id in relays if outbound else ():
                nursery.start_soon(self.keep_reservation, self.roster.by_peer_id(relay_id))
            task_status.started()
            await trio.sleep_forever()

    async def keep_reservation(self, relay: Member) -> None:
        """Hold a reservation on `relay`: reserve, then again after a reconnect and every
        REFRESH seconds; a failure is logged and retried after RETRY seconds. Never returns."""
        pid = peer_id(relay.peer_id)
        network = self.host.get_network()
        while True:
            try:
                ttl = await self.reserve(relay, RESERVE_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a relay that is down must not stop us
                self._warn("relay_reservation_failed", relay, reason=_reason(exc), retry_in=RETRY)
                self.reserved[relay.peer_id] = False
                await trio.sleep(RETRY)
                continue
            if not self.reserved.get(relay.peer_id):
                self._info("relay_reservation", relay, ttl=ttl)
            self.reserved[relay.peer_id] = True
            with trio.move_on_after(REFRESH):
                while network.get_connections(pid):
                    await trio.sleep(POLL)
                self.reserved[relay.peer_id] = False
                self._warn("relay_connection_lost", relay, effect="reserving again")

    async def reserve(self, relay: Member, timeout: float) -> int:
        """Connect to `relay` and reserve a slot on it (or refresh ours); the seconds it lasts.
        RelayError if the relay refused (it must have node.relay = true and this node in its
        roster)."""
        with trio.fail_after(timeout):
            await self.connect(relay, timeout)
            stream = await self.host.new_stream(peer_id(relay.peer_id), [HOP_PROTOCOL])
            try:
                await write_delimited_msg(stream, HopMessage(
                    type=HopMessage.RESERVE, peer=CircuitPeerId(id=self.host.get_id().to_bytes())))
                answer = await read_delimited_msg(stream, HopMessage)
            finally:
                with trio.move_on_after(1):
                    await stream.close()
        status = StatusCode(answer.status) if answer.HasField("status") else StatusCode.OK
        if status != StatusCode.OK:
            raise RelayError(f"{relay.name} refused the reservation ({status.name}): is node.relay "
                             "= true there?")
        expire = answer.reservation.expire if answer.HasField("reservation") else 0
        return max(0, int(expire - time.time()))

    # -- connecting -------------------------------------------------------------------------

    async def connect(self, member: Member, timeout: float) -> None:
        """Connect to `member` unless connected: at its roster addresses, or, for a member the
        roster reaches through relays, through each of them in turn until one works (each dial
        bounded by `timeout`). Clears py-libp2p's 60 s dial backoff first, so a peer that came
        back is reached at once."""
        pid = peer_id(member.peer_id)
        network = self.host.get_network()
        if network.get_connections(pid):
            return
        if not member.relayed:
            network.unblock_peer(pid)
            store = self.host.get_peerstore()
            store.clear_addrs(pid)
            addrs = multiaddrs(member.addresses)
            store.add_addrs(pid, addrs, 3600)
            with trio.fail_after(timeout):
                await self.host.connect(PeerInfo(pid, addrs))
            return
        async with self._dialing.setdefault(member.peer_id, trio.Lock()):
            if not network.get_connections(pid):  # another task's dial may have connected
                await self._connect_relayed(member, timeout)

    async def _connect_relayed(self, member: Member, timeout: float) -> None:
        errors = []
        for address in member.addresses:
            relay = self.roster.by_peer_id(check_circuit(address)[0][-1][1])
            if relay.peer_id == self.self_id:  # it reaches us: it connects, we wait
                errors.append(f"{member.name} is reached through this node: waiting for it to connect")
                continue
            try:
                await self.dial_via_relay(member, relay, timeout)
            except Exception as exc:  # noqa: BLE001 - try the next relay; all failed: say each
                errors.append(f"through {relay.name}: {_reason(exc)}")
                continue
            if self.log is not None:
                self.log.info("connected_via_relay", peer=member.name, relay=relay.name)
            return
        raise RelayError("; ".join(errors))

    async def dial_via_relay(self, member: Member, relay: Member, timeout: float) -> None:
        """One relayed connection to `member` through `relay`, Noise-authenticated end to end."""
        circuit = Multiaddr(f"{_relay_part(member, relay)}/p2p-circuit/p2p/{member.peer_id}")
        with trio.fail_after(timeout):
            await self.connect(relay, timeout)
            await self.transport().dial(circuit)

    async def linger(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until no member this node relays for is connected
        to it: a relay member that has finished stays up while they exchange their last
        messages (site reports) through it."""
        served = [peer_id(m.peer_id) for m in self.roster if self.self_id in m.relays]
        network = self.host.get_network()
        with trio.move_on_after(timeout):
            while any(network.get_connections(pid) for pid in served):
                await trio.sleep(POLL)

    def transport(self) -> CircuitV2Transport:
        """The dialing side of circuit relay (STOP role only: dialing reserves nothing)."""
        if self._transport is None:
            self._transport = CircuitV2Transport(
                self.host, CircuitV2Protocol(self.host, limits=self.limits),
                RelayConfig(roles=RelayRole.STOP, limits=self.limits))
        return self._transport

    def _info(self, event: str, relay: Member, **fields: object) -> None:
        if self.log is not None:
            self.log.info(event, relay=relay.name, **fields)

    def _warn(self, event: str, relay: Member, **fields: object) -> None:
        if self.log is not None:
            self.log.warn_limited(event, relay.peer_id, relay=relay.name, **fields)


def _relay_part(member: Member, relay: Member) -> str:
    """The relay's part (up to its /p2p/ID) of `member`'s circuit address through `relay`."""
    for address in member.addresses:
        if is_circuit(address):
            hop, _ = check_circuit(address)
            if hop[-1][1] == relay.peer_id:
                return "/" + "/".join(f"{p}/{v}" for p, v in hop)
    raise RelayError(f"{member.name} has no address through {relay.name}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
