"""The inbound-limiter leak of py-libp2p 0.8.1 and a per-IP cap on inbound connections.

Why: `Swarm._handle_inbound_connection` takes a token of the swarm's inbound limiter
(`max_connections - min_connections`, 250 by default) and releases it only when
`_do_handle_inbound_connection` returns. For TCP that function upgrades the connection and then
awaits `self.manager.wait_finished()`, i.e. it returns when the *swarm* stops, not when the
connection closes. Every accepted inbound connection therefore keeps its token (and a parked
task) forever: after 250 of them, even closed, the node refuses every inbound connection.

The patch (`apply`, an instance patch of one swarm) replaces `_do_handle_inbound_connection`
with the library's own steps for TCP (IP gate, security + muxer upgrade, which
`ConnectionConfig.inbound_upgrade_timeout` bounds) but then waits for *that connection's*
`event_closed`, so the token is held exactly while the connection is open. It also caps the
inbound connections open at once from one remote IP (`MAX_INBOUND_PER_IP`), counted from TCP
accept, so one address cannot take all the limiter's slots. Pre-multiplexed connections (QUIC,
WebTransport; we use neither) go to the library code unchanged.

How to drop it: `tests/net/test_libp2p_workarounds.py::test_canary_library_still_leaks` fails
once the library releases the token per connection (or the leaking line is gone). Then delete
the limiter part here (keep the per-IP cap, moving it if the library's hook changes) and that
canary.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import IMuxedConn
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.swarm import Swarm

# the library line this patch exists for; the canary test checks it is still there
LEAK_MARKER = "await self.manager.wait_finished()"

# Inbound connections open at once from one IP. Above what a loopback test consortium
# (4-8 nodes, all on 127.0.0.1) needs, far below the limiter's 250.
MAX_INBOUND_PER_IP = 32


def library_still_leaks() -> bool:
    """True while py-libp2p's inbound handler parks until the swarm stops (the leak)."""
    inner = inspect.getsource(Swarm._do_handle_inbound_connection)
    outer = inspect.getsource(Swarm._handle_inbound_connection)
    return LEAK_MARKER in inner and "self._inbound_limiter.release()" in outer


@dataclass
class InboundGuard:
    """Per-IP counts of open inbound connections of one swarm, and the patched handler."""

    per_ip: int = MAX_INBOUND_PER_IP
    on_refused: Callable[[str, str], None] | None = None  # (remote IP, reason)
    open_by_ip: dict[str, int] = field(default_factory=dict)

    async def handle(self, swarm: Swarm, rwc, maddr, failure_event) -> None:
        """Replacement for Swarm._do_handle_inbound_connection (bound to one swarm)."""
        if isinstance(rwc, IMuxedConn):  # QUIC / WebTransport: library code, unchanged
            await type(swarm)._do_handle_inbound_connection(swarm, rwc, maddr, failure_event)
            return
        ip = _remote_ip(rwc)
        if self.open_by_ip.get(ip, 0) >= self.per_ip:
            await _close_quietly(rwc)
            notify(self.on_refused, ip, f"{self.per_ip} inbound connections from this address are open")
            return
        self.open_by_ip[ip] = self.open_by_ip.get(ip, 0) + 1
        try:
            await _serve_until_closed(swarm, rwc, maddr)
        finally:
            self.open_by_ip[ip] -= 1
            if not self.open_by_ip[ip]:
                del self.open_by_ip[ip]


def apply(swarm: Swarm, per_ip: int = MAX_INBOUND_PER_IP,
          on_refused: Callable[[str, str], None] | None = None) -> InboundGuard:
    """Patch this swarm (before host.run): limiter token per connection, per-IP cap.
    The guard is also kept as `swarm.p2pfl_inbound_guard`."""
    guard = InboundGuard(per_ip=per_ip, on_refused=on_refused)

    async def _do_handle_inbound_connection(self, rwc, maddr, failure_event) -> None:
        await guard.handle(self, rwc, maddr, failure_event)

    swarm._do_handle_inbound_connection = types.MethodType(_do_handle_inbound_connection, swarm)
    swarm.p2pfl_inbound_guard = guard
    return guard


async def _serve_until_closed(swarm: Swarm, rwc, maddr) -> None:
    """The library's TCP path, except that it returns when this connection closes."""
    remote = swarm._build_remote_multiaddr(rwc)
    if remote is not None and not await swarm.connection_gate.is_allowed(remote):
        await _close_quietly(rwc)
        return
    raw = RawConnection(rwc, False)
    try:
        muxed = await swarm.upgrade_inbound_raw_conn(raw, maddr)  # bounded by inbound_upgrade_timeout
    except Exception:  # noqa: BLE001 - refused or failed upgrade: the library logs it at debug
        await _close_quietly(raw)
        return
    closed = getattr(muxed, "event_closed", None)  # Yamux and Mplex both have it
    if closed is not None:
        await closed.wait()
        return
    while not muxed.is_closed:
        await trio.sleep(1)


def _remote_ip(rwc) -> str:
    try:
        address = rwc.get_remote_address()
    except Exception:  # noqa: BLE001 - a stream without an address counts as one "unknown" IP
        address = None
    return str(address[0]) if address else "unknown"


async def _close_quietly(conn) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await conn.close()
        except Exception:  # noqa: BLE001 - already closed or reset
            pass


def notify(callback: Callable[[str, str], None] | None, who: str, reason: str) -> None:
    """Call a refusal callback; its failure must not reach the swarm's listener."""
    if callback is None:
        return
    try:
        callback(who, reason)
    except Exception:  # noqa: BLE001 - a logging callback's bug must not break accepting
        pass
