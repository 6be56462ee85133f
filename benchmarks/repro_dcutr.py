"""Why p2pfl does not run DCUtR (py-libp2p 0.8.1 hole punching): a reproduction in its setting.

The daemon's hosts (make_host: Noise, Yamux, roster gate, one connection per peer) on
127.0.0.1: R a relay member, B a direct member (it listens), A and C outbound members (they
listen nowhere, `node.reachability = "outbound"`), A and C holding reservations on R. Each
runs `DCUtRProtocol`. A relayed connection is opened B -> A and C -> A, then:

1. B -> A (direct member to outbound one): B's `initiate_hole_punch(A)` is False: A advertises
   no address (it listens nowhere). The only "upgrade" is DCUtR's step 0 on A's side, a plain
   dial of B's listen address, which the daemon already makes without DCUtR whenever A has
   something for B (A's roster entry for B is direct).
2. C -> A (two outbound members): False both ways, no direct connection ever: a hole punch
   binds its dial to the local listen port and advertises listen ports (NAT port prediction),
   so a side that listens nowhere cannot take part. Hole punching through a real NAT is not
   testable on loopback (no NAT here, and no netfilter tools on this machine).

Usage: python benchmarks/repro_dcutr.py   (about 15 s; prints what each step found)
"""

from __future__ import annotations

import random
import socket

import multiaddr
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.tools.anyio_service import background_trio_service

from p2pfl.net.host import make_host, quiet_libp2p_logs
from p2pfl.net.relay import Relaying
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.roster import Member, Roster

AUTO_DRIVE_WAIT = 6.0  # seconds: the auto-drive loop tries every relayed peer every 2 s


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kinds(host, other) -> list[str]:
    """'relayed' or 'direct' per open connection to `other`."""
    conns = host.get_network().get_connections(ID.from_base58(other.peer_id))
    return ["relayed" if any("/p2p-circuit" in str(a) for a in c.get_transport_addresses()) else "direct"
            for c in conns]


async def main() -> None:
    quiet_libp2p_logs()
    keys = {n: _key(i) for i, n in enumerate("rbac", start=21)}
    r_port, b_port = _port(), _port()
    via = f"/ip4/127.0.0.1/tcp/{r_port}/p2p/{peer_id_of(keys['r'])}/p2p-circuit"
    roster = Roster([Member("r", peer_id_of(keys["r"]), (f"/ip4/127.0.0.1/tcp/{r_port}",)),
                     Member("b", peer_id_of(keys["b"]), (f"/ip4/127.0.0.1/tcp/{b_port}",)),
                     Member("a", peer_id_of(keys["a"]), (via,)), Member("c", peer_id_of(keys["c"]), (via,))])
    hosts = {n: make_host(k, allowed=set(roster.peer_ids)) for n, k in keys.items()}
    relaying = {n: Relaying(h, roster, peer_id_of(keys[n])) for n, h in hosts.items()}
    dcutr = {n: DCUtRProtocol(h) for n, h in hosts.items() if n != "r"}
    listen = {"r": r_port, "b": b_port}
    m = {n: roster.by_name(n) for n in "rbac"}
    async with hosts["r"].run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{r_port}")]), \
            hosts["b"].run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{listen['b']}")]), \
            hosts["a"].run([]), hosts["c"].run([]), trio.open_nursery() as n:
        await n.start(relaying["r"].serve, True, False)
        for name in "ac":
            await n.start(relaying[name].serve, False, True)
        for service in dcutr.values():
            n.start_soon(_run_service, service)
        with trio.fail_after(20):
            while not all(relaying[x].reserved.get(m["r"].peer_id) for x in "ac"):
                await trio.sleep(0.05)
        for src in ("b", "c"):
            await relaying[src].dial_via_relay(m["a"], m["r"], 10)
        print(f"a listens on: {hosts['a'].get_addrs() or 'nothing'}")
        print(f"before: b->a {_kinds(hosts['b'], m['a'])}, c->a {_kinds(hosts['c'], m['a'])}")
        for src in ("b", "c"):
            with trio.move_on_after(20):
                ok = await dcutr[src].initiate_hole_punch(ID.from_base58(m["a"].peer_id))
                print(f"{src}.initiate_hole_punch(a) -> {ok}")
        with trio.move_on_after(20):
            ok = await dcutr["a"].initiate_hole_punch(ID.from_base58(m["c"].peer_id))
            print(f"a.initiate_hole_punch(c) -> {ok}")
        await trio.sleep(AUTO_DRIVE_WAIT)
        print(f"after {AUTO_DRIVE_WAIT:g} s of auto-drive: b->a {_kinds(hosts['b'], m['a'])}, "
              f"a->b {_kinds(hosts['a'], m['b'])}, c->a {_kinds(hosts['c'], m['a'])}, "
              f"a->c {_kinds(hosts['a'], m['c'])}")
        n.cancel_scope.cancel()


async def _run_service(service) -> None:
    async with background_trio_service(service):
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
