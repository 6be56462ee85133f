"""The roster gate of make_host: strangers are refused right after the Noise handshake, members
are unaffected; the per-IP cap, the upgrade timeout and the rate-limited log. All on 127.0.0.1."""

from __future__ import annotations

import io

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from strangers import handshake, seeded_key, stranger_handshakes, stranger_keys

from p2pfl.net import eventlog, libp2p_fixes
from p2pfl.net.eventlog import EventLog
from p2pfl.net.host import PROTOCOL, close_unlisted, key_pair, make_host, quiet_libp2p_logs

LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
WAIT = 20.0  # seconds any wait here may take
STRANGERS = 300  # more than the library's default inbound cap (250)


def _pid(seed: int) -> str:
    return ID.from_pubkey(key_pair(seeded_key(seed)).public_key).to_base58()


async def _until(condition, what: str) -> None:
    with trio.move_on_after(WAIT):
        while not condition():
            await trio.sleep(0.02)
    assert condition(), f"timed out waiting for {what}"


class Node:
    """A gated host (members = seeds 1..3), its handled streams and its refusals."""

    def __init__(self, seed: int = 1, members: tuple[int, ...] = (1, 2, 3), log: EventLog | None = None):
        self.allowed = {_pid(s) for s in members}
        self.refused: list[tuple[str, str]] = []
        self.ip_refused: list[tuple[str, str]] = []
        self.handled: list[str] = []
        self.log = log
        self.host = make_host(seeded_key(seed), allowed=self.allowed, on_refused=self._refused,
                              on_ip_refused=lambda ip, r: self.ip_refused.append((ip, r)))
        self.host.set_stream_handler(TProtocol(PROTOCOL), self._echo)

    def _refused(self, peer: str, reason: str) -> None:
        self.refused.append((peer, reason))
        if self.log is not None:
            self.log.warn_limited("stranger_refused", peer, peer_id=peer, reason=reason)

    async def _echo(self, stream) -> None:
        self.handled.append(stream.muxed_conn.peer_id.to_base58())
        await stream.write(b"ok")
        await stream.close()

    @property
    def address(self) -> str:
        """/ip4/127.0.0.1/tcp/PORT (without /p2p/)."""
        return str(self.host.get_addrs()[0]).split("/p2p/")[0]

    @property
    def info(self) -> PeerInfo:
        return info_from_p2p_addr(self.host.get_addrs()[0])

    def open_from(self, ip: str = "127.0.0.1") -> int:
        return self.host.get_network().p2pfl_inbound_guard.open_by_ip.get(ip, 0)


async def _member_gets_ok(node: Node, seed: int = 2) -> bool:
    """A member connects with a fresh host and has a stream handled; False on any failure."""
    client = make_host(seeded_key(seed))
    async with client.run([]):
        try:
            with trio.fail_after(10):
                await client.connect(node.info)
                stream = await client.new_stream(node.host.get_id(), [TProtocol(PROTOCOL)])
                ok = await stream.read(2) == b"ok"
        except Exception:  # noqa: BLE001 - refused
            ok = False
        await client.close()
    return ok


def _run(main):
    quiet_libp2p_logs()
    return trio.run(main)


def test_member_connects_after_many_stranger_handshakes():
    out = io.StringIO()
    log = EventLog("n1", out, clock=lambda: 0.0)  # frozen: the whole run is one window

    async def main():
        node = Node(log=log)
        async with node.host.run([LOOPBACK]):
            done = await stranger_handshakes(node.address, node.host.get_id().to_base58(), STRANGERS,
                                             timeout=5.0, seed=7)
            await _until(lambda: len(node.refused) == STRANGERS, "every stranger to be refused")
            ok = await _member_gets_ok(node)
            connections = len(node.host.get_network().get_connections())
            await node.host.close()
        return done, node, ok, connections

    done, node, ok, connections = _run(main)
    assert done == STRANGERS
    assert {p for p, _ in node.refused} == set(_stranger_ids(STRANGERS, seed=7))
    assert ok and node.handled == [_pid(2)]
    assert connections <= 1  # the member's only
    lines = out.getvalue().splitlines()
    assert len(lines) == eventlog.PER_EVENT  # 300 fresh keys in one window: the per-event bound
    assert all("event=stranger_refused" in line for line in lines)


def _stranger_ids(n: int, seed: int) -> list[str]:
    return [ID.from_pubkey(p.public_key).to_base58() for p in stranger_keys(n, seed)]


def test_stranger_gets_no_stream_and_its_connection_is_closed():
    async def main():
        node = Node()
        async with node.host.run([LOOPBACK]):
            me = node.host.get_id().to_base58()
            raw = await handshake(node.address, me, stranger_keys(1, seed=9)[0], 5.0)
            stranger = make_host(seeded_key(50))
            failures = {}
            async with stranger.run([]):
                failures["connect"] = await _fails(stranger.connect(node.info))
                for name, proto in (("ours", PROTOCOL), ("ping", PING), ("identify", IDENTIFY)):
                    stranger.get_network().unblock_peer(node.host.get_id())  # dial again, no backoff
                    failures[name] = await _fails(stranger.new_stream(node.host.get_id(), [TProtocol(proto)]))
                stranger.get_network().unblock_peer(node.host.get_id())
                failures["ping_service"] = await _fails(PingService(stranger).ping(node.host.get_id()))
                # each attempt reached the handshake (the library retries a dial 3 times)
                await _until(lambda: len(node.refused) >= 6, "each attempt to be refused")
                await _until(lambda: node.open_from() == 0, "the strangers' connections to close")
                open_to_stranger = node.host.get_network().get_connections(ID.from_base58(_pid(50)))
                await stranger.close()
            await node.host.close()
        return raw, failures, open_to_stranger, node

    raw, failures, open_to_stranger, node = _run(main)
    assert raw == (True, True)  # the handshake completes, then the node closes the connection
    assert all(failures.values()), failures
    assert open_to_stranger == []
    assert node.handled == []
    assert _pid(50) in {p for p, _ in node.refused}
    assert all(reason == "inbound: peer ID not in the roster" for _, reason in node.refused)


async def _fails(call) -> bool:
    try:
        with trio.fail_after(10):
            await call
    except Exception:  # noqa: BLE001 - any refusal
        return True
    return False


def test_members_ping_and_dial_each_other_and_a_refused_dial_raises():
    async def main():
        a, b = Node(seed=1), Node(seed=2)
        stranger = make_host(seeded_key(60))
        results = {}
        async with a.host.run([LOOPBACK]), b.host.run([LOOPBACK]), stranger.run([LOOPBACK]):
            with trio.fail_after(10):
                await a.host.connect(b.info)  # outbound, member to member
                results["ping"] = await PingService(a.host).ping(b.host.get_id())
            try:
                with trio.fail_after(10):
                    await a.host.connect(info_from_p2p_addr(stranger.get_addrs()[0]))
                results["dial_stranger"] = "connected"
            except Exception as exc:  # noqa: BLE001 - what a daemon sees for a refused dial
                results["dial_stranger"] = type(exc).__name__
            results["stranger_side"] = len(stranger.get_network().get_connections())
            for host in (stranger, b.host, a.host):
                await host.close()
        return results, a

    results, a = _run(main)
    assert len(results["ping"]) == 1
    assert results["dial_stranger"] == "SwarmDialAllFailedError"
    assert (_pid(60), "outbound: peer ID not in the roster") in a.refused
    assert results["stranger_side"] == 0


def test_the_allowed_set_is_live():
    async def main():
        node = Node(members=(1, 2))
        async with node.host.run([LOOPBACK]):
            before = await _member_gets_ok(node, seed=4)
            node.allowed.add(_pid(4))  # the roster changed
            added = await _member_gets_ok(node, seed=4)
            client = make_host(seeded_key(4))
            async with client.run([]):
                with trio.fail_after(10):
                    await client.connect(node.info)
                node.allowed.discard(_pid(4))
                closed = await close_unlisted(node.host, node.allowed)
                await _until(lambda: not client.get_network().get_connections(), "the client to see it")
                await client.close()
            await node.host.close()
        return before, added, closed

    before, added, closed = _run(main)
    assert (before, added) == (False, True)
    assert closed == [_pid(4)]


def test_per_ip_cap_refuses_connections_beyond_it_while_they_are_open():
    cap = libp2p_fixes.MAX_INBOUND_PER_IP

    async def main():
        node = Node()
        node.host.get_network().connection_config.inbound_upgrade_timeout = 3 * WAIT  # stay silent
        async with node.host.run([LOOPBACK]):
            host, port = "127.0.0.1", int(node.address.rsplit("/", 1)[1])
            silent = [await trio.open_tcp_stream(host, port) for _ in range(cap)]
            await _until(lambda: node.open_from() == cap, "the silent connections to be counted")
            extra = await trio.open_tcp_stream(host, port)
            refused_extra = await _read_until_eof(extra)
            member_while_full = await _member_gets_ok(node)
            for stream in silent + [extra]:
                await stream.aclose()
            await _until(lambda: node.open_from() == 0, "the slots to be released")
            member_after = await _member_gets_ok(node)
            await node.host.close()
        return refused_extra, member_while_full, member_after, node

    refused_extra, member_while_full, member_after, node = _run(main)
    assert refused_extra
    assert member_while_full is False
    assert member_after is True
    assert node.ip_refused and all(ip == "127.0.0.1" for ip, _ in node.ip_refused)


async def _read_until_eof(stream, limit: int = 1 << 16) -> bool:
    """True if the remote closes within WAIT (whatever it sent first, e.g. multistream)."""
    received = 0
    with trio.move_on_after(WAIT):
        while received <= limit:
            try:
                data = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                return True
            if not data:
                return True
            received += len(data)
    return False


def test_silent_connection_is_dropped_after_the_upgrade_timeout():
    async def main():
        node = Node()
        node.host.get_network().connection_config.inbound_upgrade_timeout = 0.5  # read per connection
        async with node.host.run([LOOPBACK]):
            host, port = "127.0.0.1", int(node.address.rsplit("/", 1)[1])
            silent = await trio.open_tcp_stream(host, port)
            dropped = await _read_until_eof(silent)
            await silent.aclose()
            await _until(lambda: node.open_from() == 0, "the slot to be released")
            await node.host.close()
        return dropped

    assert _run(main) is True


# -- the rate-limited log ----------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _log() -> tuple[EventLog, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return EventLog("n1", out, clock=clock), out, clock


def test_log_limiter_first_line_then_one_count_line_per_window():
    log, out, clock = _log()
    for _ in range(100):
        log.warn_limited("stranger_refused", "peerA", peer_id="peerA")
        clock.now += 0.5  # 100 calls in 50 s: one window
    assert out.getvalue().count("\n") == 1
    clock.now += eventlog.WINDOW
    log.warn_limited("stranger_refused", "peerA", peer_id="peerA")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "peer_id=peerA" in lines[1] and "suppressed=99" in lines[1]
    log.warn_limited("stranger_refused", "peerA", peer_id="peerA")
    log.flush_suppressed()
    assert "event=log_suppressed of=stranger_refused count=1" in out.getvalue().splitlines()[-1]


def test_log_limiter_bounds_lines_per_event_for_fresh_keys():
    log, out, clock = _log()
    for i in range(50):
        log.warn_limited("stranger_refused", f"peer{i}", peer_id=f"peer{i}")
    log.warn_limited("transfer_refused", "peer0", peer="x")  # another event has its own bound
    lines = out.getvalue().splitlines()
    assert len(lines) == eventlog.PER_EVENT + 1
    clock.now += eventlog.WINDOW
    log.warn_limited("stranger_refused", "peer99", peer_id="peer99")
    lines = out.getvalue().splitlines()
    assert "event=log_suppressed of=stranger_refused count=40" in lines[-2]
    assert "peer_id=peer99" in lines[-1]


def test_log_limiter_memory_is_bounded():
    log, out, clock = _log()
    for i in range(5 * eventlog.MAX_KEYS):
        log.warn_limited("stranger_refused", f"peer{i}", peer_id=f"peer{i}")
        clock.now += eventlog.WINDOW / eventlog.PER_EVENT  # every line is within the budget
    assert len(log._keys) == eventlog.MAX_KEYS
    assert out.getvalue().count("\n") == 5 * eventlog.MAX_KEYS


def test_plain_warn_is_not_limited():
    log, out, _ = _log()
    for _ in range(20):
        log.warn("stranger_refused", peer_id="peerA")
    assert out.getvalue().count("\n") == 20
