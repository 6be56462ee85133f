"""The py-libp2p 0.8.1 inbound-limiter leak and our workaround (p2pfl/net/libp2p_fixes.py).

The canary fails once the library changes: then remove the workaround (see libp2p_fixes).
A small cap (max_connections - min_connections = 10) keeps these tests fast.
"""

from __future__ import annotations

import importlib.metadata

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as Noise
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
from libp2p.stream_muxer.yamux.yamux import Yamux
from strangers import seeded_key, stranger_handshakes

from p2pfl.net import libp2p_fixes
from p2pfl.net.host import key_pair, make_host, quiet_libp2p_logs

CAP = 10
PROTO = TProtocol("/p2pfl/test/echo/1.0.0")
LOOPBACK = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
WAIT = 20.0  # seconds any wait here may take


def _small_cap_host(seed: int):
    """A host like make_host's, but unpatched and with an inbound cap of CAP."""
    pair = key_pair(seeded_key(seed))
    config = ConnectionConfig(max_connections_per_peer=1, max_connections=CAP + 2, min_connections=2,
                              low_watermark=2, high_watermark=CAP + 2)
    return new_host(key_pair=pair, sec_opt={NOISE: Noise(pair, noise_privkey=x25519_pair().private_key)},
                    muxer_opt={TProtocol(YAMUX): Yamux}, connection_config=config)


async def _echo(stream) -> None:
    await stream.write(b"ok")
    await stream.close()


async def _got_ok(client, info) -> bool:
    """Connect, open a stream, read the handler's b"ok"; False on any failure."""
    try:
        with trio.fail_after(5):
            await client.connect(info)
            stream = await client.new_stream(info.peer_id, [PROTO])
            return await stream.read(2) == b"ok"
    except Exception:  # noqa: BLE001 - refused: the connection is closed before the handshake
        return False


async def _dial_and_close(info, seed: int) -> bool:
    client = make_host(seeded_key(seed))
    async with client.run([]):
        ok = await _got_ok(client, info)
        await client.close()  # leaving run() alone does not close the connection
    return ok


async def _until(condition, what: str) -> None:
    with trio.move_on_after(WAIT):
        while not condition():
            await trio.sleep(0.02)
    assert condition(), f"timed out waiting for {what}"


def _sequential(patched: bool, n: int) -> tuple[list[bool], int]:
    """n clients one after another against one server; results and borrowed limiter tokens."""
    async def main():
        server = _small_cap_host(seed=1)
        if patched:
            libp2p_fixes.apply(server.get_network())
        server.set_stream_handler(PROTO, _echo)
        limiter = server.get_network()._inbound_limiter
        async with server.run([LOOPBACK]):
            info = info_from_p2p_addr(server.get_addrs()[0])
            results = [await _dial_and_close(info, seed=100 + i) for i in range(n)]
            if patched:
                await _until(lambda: limiter.borrowed_tokens == 0, "the tokens to come back")
            borrowed = limiter.borrowed_tokens
            await server.close()
        return results, borrowed

    quiet_libp2p_logs()
    return trio.run(main)


def test_version_pinned():
    assert importlib.metadata.version("libp2p") == "0.8.1"


def test_canary_library_still_leaks():
    """FAILS once upstream releases the token per connection: then drop the workaround."""
    assert libp2p_fixes.library_still_leaks()
    results, borrowed = _sequential(patched=False, n=CAP + 1)
    assert results[:CAP] == [True] * CAP
    assert results[CAP] is False  # all earlier connections are closed, yet their slots are held
    assert borrowed == CAP


def test_patch_releases_the_slot_when_the_connection_closes():
    results, borrowed = _sequential(patched=True, n=CAP + 5)
    assert all(results)
    assert borrowed == 0


def test_patch_still_caps_open_inbound_connections():
    async def hold(info, seed: int, ok: dict, stop: trio.Event) -> None:
        client = make_host(seeded_key(seed))
        async with client.run([]):
            ok[seed] = await _got_ok(client, info)
            with trio.move_on_after(WAIT):
                await stop.wait()
            await client.close()

    async def main():
        server = _small_cap_host(seed=2)
        libp2p_fixes.apply(server.get_network())
        server.set_stream_handler(PROTO, _echo)
        limiter = server.get_network()._inbound_limiter
        async with server.run([LOOPBACK]):
            info = info_from_p2p_addr(server.get_addrs()[0])
            ok: dict[int, bool] = {}
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                for i in range(CAP):
                    nursery.start_soon(hold, info, 200 + i, ok, stop)
                await _until(lambda: len(ok) == CAP, "the clients to connect")
                extra = await _dial_and_close(info, seed=300)  # CAP open: refused
                stop.set()
            await _until(lambda: limiter.borrowed_tokens == 0, "the tokens to come back")
            after = await _dial_and_close(info, seed=301)  # all closed: accepted
            await server.close()
        return ok, extra, after

    quiet_libp2p_logs()
    ok, extra, after = trio.run(main)
    assert list(ok.values()) == [True] * CAP
    assert extra is False
    assert after is True


def test_patched_host_with_default_limits_accepts_after_300_full_upgrades():
    """The tracker's case without a roster gate: 300 upgraded, closed connections (the library
    alone refuses every one after the 250th), then a client is still served."""
    async def main():
        server = make_host(seeded_key(3))  # default limits, patched, no allow-list
        server.set_stream_handler(PROTO, _echo)
        limiter = server.get_network()._inbound_limiter
        async with server.run([LOOPBACK]):
            address, pid = str(server.get_addrs()[0]).split("/p2p/")
            done = await stranger_handshakes(address, pid, 300, timeout=5.0, seed=11)
            await _until(lambda: limiter.borrowed_tokens == 0, "the tokens to come back")
            after = await _dial_and_close(info_from_p2p_addr(server.get_addrs()[0]), seed=400)
            await server.close()
        return done, after

    quiet_libp2p_logs()
    assert trio.run(main) == (300, True)
