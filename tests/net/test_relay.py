"""Circuit relay v2 (p2pfl.net.relay): a member that only dials out is reached through a relay
member; strangers can neither reserve nor dial through it; the roster's circuit addresses.
A consortium of real node processes, then hosts in one trio process. All on 127.0.0.1."""

from __future__ import annotations

import io
import socket

import multiaddr
import pytest
import torch
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service
from strangers import seeded_key

from p2pfl.errors import UserError
from p2pfl.files.roster_file import load_roster, write_roster
from p2pfl.net import relay
from p2pfl.net.assembly import check_reachability, find_identity
from p2pfl.net.eventlog import EventLog
from p2pfl.net.host import PROTOCOL, key_pair, make_host, quiet_libp2p_logs
from p2pfl.net.relay import Relaying
from p2pfl.protocol.roster import InvalidRoster, Member, Roster, parse_roster
from p2pfl.settings.load import node_settings
from p2pfl.settings.sim import SimConfig
from p2pfl.sim.metrics import consensus_distance
from p2pfl.sim.runner import simulate

WAIT = 20.0  # seconds any wait here may take
SEEDS = {"a-outbound": 11, "b-member": 12, "d-member": 13, "r-relay": 14}  # C, the stranger: 15
PID = {name: ID.from_pubkey(key_pair(seeded_key(s)).public_key).to_base58() for name, s in SEEDS.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- a consortium with members that only dial out


def _through_relay(c, relay: str, outbound: tuple[str, ...]) -> None:
    """Make `relay` a relay member and reach `outbound` only through it (roster and node.toml)."""
    hop = c.roster.by_name(relay)
    via = (f"{hop.addresses[0]}/p2p/{hop.peer_id}/p2p-circuit",)
    members = [Member(m.name, m.peer_id, via) if m.name in outbound else m for m in c.roster]
    write_roster(c.folder / "roster.toml", Roster(members), overwrite=True)
    c.roster = load_roster(c.folder / "roster.toml")
    c.configure("node", "relay = true", relay)
    c.configure("node", 'reachability = "outbound"', *outbound)


def test_members_that_only_dial_out_train_through_a_relay_member_to_the_end(consortium):
    """hospital-1 relays; hospital-2 and -3 listen nowhere, so they reach each other only
    through it. Every round every member hears from both others, and the result is the
    simulator's (where every update arrives), as for a direct run (test_consortium.py)."""
    rounds = 4
    c = consortium(nodes=3, rounds=rounds, topology="complete")
    _through_relay(c, "hospital-1", ("hospital-2", "hospital-3"))
    c.start()
    assert c.wait() == {name: 0 for name in c.names}
    for name in c.names:
        rows = c.metrics(name)
        assert [r["round"] for r in rows] == list(range(rounds))
        others = sorted(set(c.names) - {name})
        assert all(sorted(r["heard_from"]) == others and not r["missing"] for r in rows), name
        assert f"event=done round={rounds}" in c.log(name)
    for name in ("hospital-2", "hospital-3"):
        assert "event=listening addrs=none reachability=outbound" in c.log(name)
        assert f"event=relay_reserved peer={name}" in c.log("hospital-1")
    relayed = [f"event=connected_via_relay peer={b} relay=hospital-1" in c.log(a)
               for a, b in (("hospital-2", "hospital-3"), ("hospital-3", "hospital-2"))]
    assert any(relayed)
    assert "relay_circuit source=hospital-" in c.log("hospital-1")
    cfg = SimConfig(dataset="breast_cancer", model="mlp", hidden="32", nodes=3, topology="complete",
                    partition="dirichlet:0.5", rounds=rounds, local_steps=5, batch_size=16, lr=0.05,
                    engine="reference", baseline="local", eval_every=rounds)
    decentralized = simulate(cfg).runs[0]
    accuracy = sum(c.metrics(n)[-1]["val_accuracy"] for n in c.names) / 3
    assert abs(accuracy - decentralized.final["mean_local_accuracy"]) < 1e-6
    measured = consensus_distance(torch.stack([c.params(n) for n in c.names]))
    predicted = decentralized.final["consensus_distance"]
    assert abs(measured - predicted) <= 1e-3 * predicted + 1e-9


def test_settings_that_do_not_fit_the_roster_are_one_error_line(consortium):
    c = consortium(nodes=3)
    _through_relay(c, "hospital-1", ("hospital-2",))

    def refusal(name: str) -> str:
        settings = node_settings(c.configs[name])
        with pytest.raises(UserError) as caught:
            check_reachability(settings, find_identity(settings, c.key(name), c.roster))
        return str(caught.value)

    c.configure("node", 'reachability = "direct"', "hospital-2")
    assert 'set it to "outbound"' in refusal("hospital-2")
    c.configure("node", 'reachability = "outbound"', "hospital-3")
    assert "list circuit addresses through relay members" in refusal("hospital-3")
    c.configure("node", 'reachability = "outbound"', "hospital-1")
    with pytest.raises(UserError, match=r"node.toml: node.relay needs reachability = \"direct\""):
        node_settings(c.configs["hospital-1"])
    c.configure("node", 'reachability = "sometimes"', "hospital-1")
    with pytest.raises(UserError, match="node.reachability must be direct or outbound"):
        node_settings(c.configs["hospital-1"])


# ---- hosts in one trio process


def _roster(port: int) -> Roster:
    """R direct at 127.0.0.1:port, A only through R, B and D direct (they only dial here)."""
    at = f"/ip4/127.0.0.1/tcp/{port}"
    return Roster([
        Member("r-relay", PID["r-relay"], (at,)),
        Member("a-outbound", PID["a-outbound"], (f"{at}/p2p/{PID['r-relay']}/p2p-circuit",)),
        Member("b-member", PID["b-member"], ("/ip4/127.0.0.1/tcp/2",)),
        Member("d-member", PID["d-member"], ("/ip4/127.0.0.1/tcp/3",)),
    ])


class Peer:
    """A gated host of one seed (a member, or the stranger), its Relaying and handled streams."""

    def __init__(self, roster: Roster, name: str, seed: int | None = None, gated: bool = True):
        self.roster, self.name = roster, name
        self.id = PID.get(name) or ID.from_pubkey(key_pair(seeded_key(seed)).public_key).to_base58()
        self.allowed = set(roster.peer_ids)
        self.refused: list[str] = []
        self.handled: list[str] = []
        self.out = io.StringIO()
        self.host = make_host(seeded_key(seed or SEEDS[name]), allowed=self.allowed if gated else None,
                              on_refused=lambda peer, why: self.refused.append(peer))
        self.host.set_stream_handler(TProtocol(PROTOCOL), self._echo)
        self.relaying = Relaying(self.host, roster, self.id, EventLog(name, self.out), self.allowed)

    async def _echo(self, stream) -> None:
        self.handled.append(stream.muxed_conn.peer_id.to_base58())
        await stream.write(b"ok")
        await stream.close()

    async def ask(self, other: str) -> bytes:
        """Connect to member `other` (through its relay if the roster says so), one echo."""
        with trio.fail_after(10):
            await self.relaying.connect(self.roster.by_name(other), 10)
            stream = await self.host.new_stream(ID.from_base58(PID[other]), [TProtocol(PROTOCOL)])
            answer = await stream.read(2)
            await stream.close()
        return answer


async def _until(condition, what: str) -> None:
    with trio.move_on_after(WAIT):
        while not condition():
            await trio.sleep(0.02)
    assert condition(), f"timed out waiting for {what}"


async def _raw_reserve(host, relay_id: str, in_name_of: str) -> StatusCode:
    """A RESERVE in `in_name_of`'s name, sent by `host`; the relay's status."""
    stream = await host.new_stream(ID.from_base58(relay_id), [HOP])
    await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE,
                                                 peer=CircuitPeerId(id=ID.from_base58(in_name_of).to_bytes())))
    with trio.fail_after(10):
        answer = await read_delimited_msg(stream, HopMessage)
    return StatusCode(answer.status)


def _run(main):
    quiet_libp2p_logs()
    return trio.run(main)


def test_outbound_member_is_reached_through_the_relay_end_to_end_authenticated():
    port = _free_port()
    roster = _roster(port)

    async def main():
        r, a, b = Peer(roster, "r-relay"), Peer(roster, "a-outbound"), Peer(roster, "b-member")
        listen = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]
        async with r.host.run(listen), a.host.run([]), b.host.run([]), trio.open_nursery() as n:
            await n.start(r.relaying.serve, True, False)
            await n.start(a.relaying.serve, False, True)
            await _until(lambda: a.relaying.reserved.get(PID["r-relay"]), "A's reservation on R")
            answer = await b.ask("a-outbound")
            conns = b.host.get_network().get_connections(ID.from_base58(PID["a-outbound"]))
            secured = conns[0].muxed_conn.secured_conn.get_remote_peer().to_base58()
            addrs = [str(x) for x in conns[0].get_transport_addresses()]
            # the relay logs a reservation once the library's handler returns, which may be after
            # A has its answer and the circuit is up: wait for the line rather than race it
            await _until(lambda: "event=relay_reserved" in r.out.getvalue(), "the relay's reservation line")
            n.cancel_scope.cancel()
        return a, r, b, answer, secured, addrs

    a, r, b, answer, secured, addrs = _run(main)
    assert a.host.get_addrs() == []  # A listens nowhere
    assert answer == b"ok" and a.handled == [PID["b-member"]]  # A's handler saw B, authenticated
    assert secured == PID["a-outbound"] and any("/p2p-circuit" in x for x in addrs)  # Noise with A
    assert "event=relay_reserved peer=a-outbound" in r.out.getvalue()
    assert "event=relay_circuit source=b-member target=a-outbound" in r.out.getvalue()
    assert "event=connected_via_relay peer=a-outbound relay=r-relay" in b.out.getvalue()


def test_a_stranger_can_neither_reserve_on_nor_dial_through_the_relay():
    port = _free_port()
    roster = _roster(port)

    async def main():
        r, a = Peer(roster, "r-relay"), Peer(roster, "a-outbound")
        c = Peer(roster, "c-stranger", seed=15, gated=False)
        listen = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]
        failed = {}
        async with r.host.run(listen), a.host.run([]), c.host.run([]), trio.open_nursery() as n:
            await n.start(r.relaying.serve, True, False)
            await n.start(a.relaying.serve, False, True)
            await _until(lambda: a.relaying.reserved.get(PID["r-relay"]), "A's reservation on R")
            for what, call in (("reserve", c.relaying.reserve(roster.by_name("r-relay"), 5)),
                               ("dial", c.relaying.dial_via_relay(roster.by_name("a-outbound"),
                                                                  roster.by_name("r-relay"), 5))):
                try:
                    await call
                except Exception as exc:  # noqa: BLE001 - any refusal will do
                    failed[what] = exc
            n.cancel_scope.cancel()
        return r, a, c, failed

    r, a, c, failed = _run(main)
    assert set(failed) == {"reserve", "dial"}
    assert c.id in r.refused  # the relay's host gate: refused right after the Noise handshake
    assert a.handled == [] and c.id not in r.out.getvalue().split("relay_reserved")[-1]


def test_the_hop_service_itself_serves_members_only_and_in_their_own_name():
    """Without the host gate (defence in depth): RosterRelay's own checks."""
    port = _free_port()
    roster = _roster(port)

    async def main():
        r = Peer(roster, "r-relay", gated=False)
        c, b = Peer(roster, "c-stranger", seed=15, gated=False), Peer(roster, "b-member")
        status = {}
        async with r.host.run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]), c.host.run([]), \
                b.host.run([]), trio.open_nursery() as n:
            await n.start(r.relaying.serve, True, False)
            for peer in (c, b):
                await peer.relaying.connect(roster.by_name("r-relay"), 5)
            status["stranger"] = await _raw_reserve(c.host, PID["r-relay"], c.id)
            status["in_a_name"] = await _raw_reserve(b.host, PID["r-relay"], PID["a-outbound"])
            status["own_name"] = await _raw_reserve(b.host, PID["r-relay"], PID["b-member"])
            at = f"/ip4/127.0.0.1/tcp/{port}/p2p/{PID['r-relay']}/p2p-circuit/p2p/"
            for what, peer, target in (("stranger_dials", c, PID["b-member"]), ("to_stranger", b, c.id)):
                try:
                    with trio.fail_after(10):
                        await peer.relaying.transport().dial(multiaddr.Multiaddr(at + target))
                except Exception as exc:  # noqa: BLE001 - the refusal
                    status[what] = str(exc)
            n.cancel_scope.cancel()
        return r, status

    r, status = _run(main)
    assert status["stranger"] == StatusCode.PERMISSION_DENIED
    assert status["in_a_name"] == StatusCode.PERMISSION_DENIED  # a member, in another's name
    assert status["own_name"] == StatusCode.OK
    denied = f"status {StatusCode.PERMISSION_DENIED}"
    assert denied in status["stranger_dials"] and denied in status["to_stranger"]
    assert "event=relay_refused" in r.out.getvalue()


async def _library_relay(host, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """py-libp2p's own hop service, unfiltered, with our limits."""
    service = CircuitV2Protocol(host, limits=relay.limits(4), allow_hop=True)
    async with background_trio_service(service):
        await service.event_started.wait()
        task_status.started()
        await trio.sleep_forever()


async def _second_circuit_survives(library_relay: bool) -> bool:
    """B and D each reach A through R; B closes its connection. Does D's still carry a stream?"""
    port = _free_port()
    roster = _roster(port)
    r, a, b, d = (Peer(roster, n) for n in ("r-relay", "a-outbound", "b-member", "d-member"))
    listen = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]
    a_id = ID.from_base58(PID["a-outbound"])
    async with r.host.run(listen), a.host.run([]), b.host.run([]), d.host.run([]), \
            trio.open_nursery() as n:
        if library_relay:
            await n.start(_library_relay, r.host)
        else:
            await n.start(r.relaying.serve, True, False)
        await n.start(a.relaying.serve, False, True)
        await _until(lambda: a.relaying.reserved.get(PID["r-relay"]), "A's reservation on R")
        assert await b.ask("a-outbound") == b"ok" and await d.ask("a-outbound") == b"ok"
        for conn in list(b.host.get_network().get_connections(a_id)):
            await conn.close()
        await _until(lambda: not a.host.get_network().get_connections(ID.from_base58(PID["b-member"])),
                     "A to see B's circuit closed")
        await trio.sleep(0.5)
        survived = bool(d.host.get_network().get_connections(a_id))
        if survived:
            try:
                with trio.fail_after(10):
                    stream = await d.host.new_stream(a_id, [TProtocol(PROTOCOL)])  # no new dial
                    survived = await stream.read(2) == b"ok"
            except Exception:  # noqa: BLE001 - a dead connection
                survived = False
        n.cancel_scope.cancel()
    return survived


def test_the_end_of_one_circuit_leaves_another_to_the_same_member_open():
    assert _run(lambda: _second_circuit_survives(library_relay=False))


def test_canary_library_relay_closes_the_other_circuit():
    """py-libp2p 0.8.1 books circuits by one peer (`_active_relays`): the end of B's circuit to A
    closes D's. When this fails, the library got it right: drop relay._Unbooked and
    RosterRelay._relay_data, and this canary."""
    assert not _run(lambda: _second_circuit_survives(library_relay=True))


def test_the_host_gate_refuses_a_stranger_that_comes_through_a_relay():
    """An unfiltering relay (the library's hop service) lets a stranger's circuit reach A: A's own
    gate refuses it right after the Noise handshake over the circuit, no stream handled."""
    port = _free_port()
    roster = _roster(port)

    async def main():
        r, a = Peer(roster, "r-relay", gated=False), Peer(roster, "a-outbound")
        c = Peer(roster, "c-stranger", seed=15, gated=False)
        circuit = f"/ip4/127.0.0.1/tcp/{port}/p2p/{PID['r-relay']}/p2p-circuit/p2p/{PID['a-outbound']}"
        failure = None
        async with r.host.run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]), a.host.run([]), \
                c.host.run([]), trio.open_nursery() as n:
            await n.start(_library_relay, r.host)
            await n.start(a.relaying.serve, False, True)
            await _until(lambda: a.relaying.reserved.get(PID["r-relay"]), "A's reservation on R")
            try:
                with trio.fail_after(10):
                    await c.relaying.transport().dial(multiaddr.Multiaddr(circuit))
                    stream = await c.host.new_stream(ID.from_base58(PID["a-outbound"]), [TProtocol(PROTOCOL)])
                    await stream.read(2)
            except Exception as exc:  # noqa: BLE001 - the refusal
                failure = exc
            await _until(lambda: c.id in a.refused, "A's gate to refuse C")
            n.cancel_scope.cancel()
        return a, failure

    a, failure = _run(main)
    assert failure is not None and a.handled == []


def test_the_outbound_member_reserves_again_when_the_relay_comes_back():
    port = _free_port()
    roster = _roster(port)

    async def main():
        a, b = Peer(roster, "a-outbound"), Peer(roster, "b-member")
        listen = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")]
        async with a.host.run([]), b.host.run([]), trio.open_nursery() as n:
            await n.start(a.relaying.serve, False, True)  # the relay is not there yet
            await _until(lambda: "relay_reservation_failed" in a.out.getvalue(), "a failed reservation")
            for _ in range(2):  # up, then down and up again: a new process, same key and port
                r = Peer(roster, "r-relay")
                async with r.host.run(listen), trio.open_nursery() as rn:
                    await rn.start(r.relaying.serve, True, False)
                    await _until(lambda r=r: "relay_reserved" in r.out.getvalue(), "A to reserve on R")
                    assert await b.ask("a-outbound") == b"ok"
                    rn.cancel_scope.cancel()
                await r.host.close()
                for conn in list(b.host.get_network().get_connections()):
                    await conn.close()
                await _until(lambda: not a.relaying.reserved.get(PID["r-relay"])
                             or "relay_connection_lost" in a.out.getvalue(), "A to see R gone")
            n.cancel_scope.cancel()
        return a

    a = _run(main)
    log = a.out.getvalue()
    assert log.count("event=relay_reservation relay=r-relay") == 2
    assert "event=relay_connection_lost relay=r-relay" in log


# ---- the roster's circuit addresses (p2pfl.protocol.roster, p2pfl.protocol.multiaddr)

R, A, B = PID["r-relay"], PID["a-outbound"], PID["b-member"]
VIA_R = f"/ip4/10.0.0.5/tcp/9001/p2p/{R}/p2p-circuit"


def _roster_text(a_addresses: list[str], b_addresses: tuple[str, ...] = ("/ip4/10.0.0.6/tcp/9001",)) -> str:
    def member(name, pid, addrs):
        quoted = ", ".join(f'"{a}"' for a in addrs)
        return f'[[member]]\nname = "{name}"\npeer_id = "{pid}"\naddresses = [{quoted}]\n\n'

    return (member("r", R, ["/ip4/10.0.0.5/tcp/9001"]) + member("a", A, a_addresses)
            + member("b", B, b_addresses))


def test_a_circuit_address_through_a_direct_member_is_accepted():
    for addrs in ([VIA_R], [f"{VIA_R}/p2p/{A}"]):
        roster = parse_roster(_roster_text(addrs))
        assert roster.by_name("a").relayed and roster.by_name("a").relays == (R,)
        assert not roster.by_name("r").relayed
    two = parse_roster(_roster_text([VIA_R, f"/ip4/10.0.0.6/tcp/9001/p2p/{B}/p2p-circuit"]))
    assert two.by_name("a").relays == (R, B)


@pytest.mark.parametrize(("a_addresses", "b_addresses", "reason"), [
    ([f"/ip4/10.0.0.7/tcp/9001/p2p/{PID['d-member']}/p2p-circuit"], None, "not a member's peer_id"),
    ([f"/ip4/10.0.0.6/tcp/9001/p2p/{B}/p2p-circuit"], (VIA_R,), "itself reached through a relay"),
    ([f"/ip4/10.0.0.9/tcp/9001/p2p/{R}/p2p-circuit"], None, "not one of 'r''s addresses"),
    ([f"/ip4/10.0.0.8/tcp/9001/p2p/{A}/p2p-circuit"], None, "goes through the member itself"),
    ([VIA_R, "/ip4/10.0.0.8/tcp/9001"], None, "either all direct or all circuit"),
    ([f"{VIA_R}/p2p/{B}"], None, "names a different peer ID"),
    (["/p2p-circuit"], None, "bad address"),
    (["/ip4/10.0.0.5/tcp/9001/p2p-circuit"], None, "is not a circuit address"),
    ([f"{VIA_R}/p2p/{A}/p2p-circuit"], None, "is not a circuit address"),
    ([f"{VIA_R}x"], None, "is not a circuit address"),
    ([f"{VIA_R}/ip4/1.2.3.4/tcp/1"], None, "is not a circuit address"),
    ([f"/ip4/10.0.0.5/udp/9001/p2p/{R}/p2p-circuit"], None, "bad address"),
])
def test_the_roster_refuses_other_circuit_addresses(a_addresses, b_addresses, reason):
    text = _roster_text(a_addresses, *(() if b_addresses is None else (b_addresses,)))
    with pytest.raises(InvalidRoster, match=reason):
        parse_roster(text, "roster.toml")
