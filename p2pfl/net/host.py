"""A libp2p host as docs/architecture.md describes: TCP, Noise only, Yamux only, one connection per peer.

The default py-libp2p host also accepts /plaintext, which lets a dialer claim any peer ID, so
the security options are always given explicitly. The identity is the node's own Ed25519 key
file (the same key signs model updates). A host given the roster's peer IDs refuses every
other peer right after the Noise handshake, so no stream of a stranger is ever handled (ping and
identify included). The py-libp2p workarounds it applies live in libp2p_fixes/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import multiaddr
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p import new_host
from libp2p.abc import IRawConnection, ISecureConn
from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as Noise
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2pfl.net import libp2p_fixes

PROTOCOL = "/p2pfl/update/1.0.0"
HELLO_PROTOCOL = "/p2pfl/hello/2.0.0"  # the start quorum (p2pfl.net.quorum)
STATS_PROTOCOL = "/p2pfl/statistics/1.0.0"  # agreeing on the preprocessing (p2pfl.net.agreement)
REPORT_PROTOCOL = "/p2pfl/report/1.0.0"  # site reports when training ends (p2pfl.net.reports)
STATUS_PROTOCOL = "/p2pfl/status/1.0.0"  # status lines for `p2pfl status` (p2pfl.net.status_gossip)
ROSTER_PROTOCOL = "/p2pfl/roster/1.0.0"  # signed roster versions (p2pfl.net.roster_gossip)
MODEL_PROTOCOL = "/p2pfl/model/1.0.0"  # the current model for a member joining mid-run (p2pfl.net.joining)


def key_pair(key: Ed25519PrivateKey) -> KeyPair:
    """The libp2p key pair of our Ed25519 key (same peer ID)."""
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    private = Libp2pKey.new(raw)
    return KeyPair(private, private.get_public_key())


# Bound on an inbound security + muxer upgrade (the swarm reads it per connection), so a silent
# TCP connection cannot hold an inbound slot for long.
UPGRADE_TIMEOUT = 10.0

REFUSED_REASON = "peer ID not in the roster"


class GatedNoise(Noise):
    """Noise that refuses, right after the handshake and before the muxer is negotiated, a
    remote whose authenticated peer ID (base58) is not in `allowed`, inbound and outbound.
    `allowed` is used by reference: updating the caller's set takes effect on the next
    handshake."""

    def __init__(self, pair: KeyPair, allowed: set[str],
                 on_refused: Callable[[str, str], None] | None = None):
        super().__init__(pair, noise_privkey=x25519_pair().private_key)
        self.allowed = allowed
        self.on_refused = on_refused

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return await self._admit(await super().secure_inbound(conn), "inbound")

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return await self._admit(await super().secure_outbound(conn, peer_id), "outbound")

    async def _admit(self, conn: ISecureConn, direction: str) -> ISecureConn:
        peer = conn.get_remote_peer().to_base58()
        if peer in self.allowed:
            return conn
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - the remote may have gone already
                pass
        libp2p_fixes.notify(self.on_refused, peer, f"{direction}: {REFUSED_REASON}")
        raise HandshakeFailure(f"{direction} connection of {peer}: {REFUSED_REASON}")


def make_host(key: Ed25519PrivateKey, allowed: set[str] | None = None,
              on_refused: Callable[[str, str], None] | None = None,
              on_ip_refused: Callable[[str, str], None] | None = None) -> BasicHost:
    """A host with Noise-only security, Yamux-only muxing and max_connections_per_peer=1.

    With `allowed` (base58 peer IDs, kept by reference), connections of any other peer ID are
    refused right after the Noise handshake, inbound and outbound, with
    `on_refused(peer_id, reason)`. Always: the inbound limiter is released per connection and
    at most `libp2p_fixes.MAX_INBOUND_PER_IP` inbound connections per remote IP are open at
    once, refusals beyond that call `on_ip_refused(ip, reason)`; bulk transfers use the
    throughput patches (see libp2p_fixes)."""
    libp2p_fixes.apply_throughput()
    pair = key_pair(key)
    if allowed is None:
        noise = Noise(pair, noise_privkey=x25519_pair().private_key)
    else:
        noise = GatedNoise(pair, allowed, on_refused)
    host = new_host(
        key_pair=pair,
        sec_opt={NOISE: noise},
        muxer_opt={TProtocol(YAMUX): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1,
                                           inbound_upgrade_timeout=UPGRADE_TIMEOUT),
    )
    libp2p_fixes.apply(host.get_network(), on_refused=on_ip_refused)
    return host


async def close_unlisted(host: BasicHost, allowed: set[str]) -> list[str]:
    """Close the open connections of peers not in `allowed` (after a roster change); returns
    their peer IDs."""
    network = host.get_network()
    gone = [pid for pid in list(network.connections) if pid.to_base58() not in allowed]
    for pid in gone:
        with trio.move_on_after(5):
            await host.disconnect(pid)
    return [pid.to_base58() for pid in gone]


def peer_id(text: str) -> ID:
    """libp2p ID object from a base58 peer ID string."""
    return ID.from_base58(text)


def multiaddrs(addresses: list[str] | tuple[str, ...]) -> list[multiaddr.Multiaddr]:
    """Multiaddr objects from roster strings."""
    return [multiaddr.Multiaddr(a) for a in addresses]


def quiet_libp2p_logs() -> None:
    """py-libp2p logs expected failures (a peer that is down) as errors, some over several
    lines; the daemon logs its own one-line events instead. Importing libp2p resets its
    logger, so import first, then silence it (a NullHandler keeps Python's last-resort
    handler from printing)."""
    import libp2p  # noqa: F401 - its import configures the logger we override

    logger = logging.getLogger("libp2p")
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
