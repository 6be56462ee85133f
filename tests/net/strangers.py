"""Stranger dialers for tests: raw TCP + multistream + Noise with fresh keys, no libp2p host.

A full py-libp2p host per stranger costs far more than the handshake; this does only what a
stranger's dial costs the node: TCP accept, security negotiation, the Noise XX handshake, and
the muxer proposal that a gated node answers by closing the connection.
"""

from __future__ import annotations

import random

import multiaddr
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
from libp2p.custom_types import TProtocol
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as Noise
from libp2p.security.security_multistream import SecurityMultistream
from libp2p.stream_muxer.muxer_multistream import MuxerMultistream
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2pfl.net.host import quiet_libp2p_logs


def seeded_key(seed: int) -> Ed25519PrivateKey:
    """A node key (as p2pfl keeps it) from a seed, for reproducible peer IDs in tests."""
    return Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))


def stranger_keys(n: int, seed: int = 0) -> list:
    """n libp2p Ed25519 key pairs from a seeded generator (reproducible peer IDs)."""
    rng = random.Random(seed)
    return [create_new_key_pair(rng.randbytes(32)) for _ in range(n)]


def _tcp_target(address: str) -> tuple[str, int]:
    ma = multiaddr.Multiaddr(address)
    return ma.value_for_protocol("ip4"), int(ma.value_for_protocol("tcp"))


async def handshake(address: str, peer_id: str, pair, timeout: float) -> tuple[bool, bool]:
    """Dial once as `pair`, all under `timeout`: (Noise handshake completed, the node then
    refused the muxer negotiation, i.e. closed the connection). After the handshake this
    proposes Yamux as a real dialer does, so a node that accepts strangers completes the full
    upgrade (the case that exhausted py-libp2p's inbound limiter). Failed dial: (False, False)."""
    host, port = _tcp_target(address)
    raw = secured = None
    refused = False
    with trio.move_on_after(timeout):
        try:
            raw = RawConnection(TrioTCPStream(await trio.open_tcp_stream(host, port)), True)
            security = SecurityMultistream({NOISE: Noise(pair, noise_privkey=x25519_pair().private_key)})
            secured = await security.secure_outbound(raw, ID.from_base58(peer_id))
            refused = not await _muxer_accepted(secured)
        except Exception:  # noqa: BLE001 - not listening, or refused before/during the handshake
            pass
    if secured is not None or raw is not None:
        await _quiet_close(secured or raw)
    return secured is not None, refused


async def _muxer_accepted(secured) -> bool:
    try:
        await MuxerMultistream({TProtocol(YAMUX): Yamux}).select_transport(secured)
    except Exception:  # noqa: BLE001 - the node closed the connection
        return False
    return True


async def _quiet_close(conn) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await conn.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


async def stranger_handshakes(address: str, peer_id: str, n: int, timeout: float, seed: int = 0) -> int:
    """Dial `address` (/ip4/IP/tcp/PORT of the node whose peer ID is `peer_id`) with n fresh
    keys, one after another, each attempt under `timeout` seconds; returns how many completed
    the Noise handshake (whether the node then refused them, as a gated node does, or not)."""
    quiet_libp2p_logs()  # py-libp2p logs each refused muxer negotiation as a warning
    done = 0
    for pair in stranger_keys(n, seed):
        completed, _ = await handshake(address, peer_id, pair, timeout)
        done += completed
    return done
