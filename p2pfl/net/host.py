"""A libp2p host as DESIGN.md prescribes: TCP, Noise only, Yamux only, one connection per peer.

The default py-libp2p host also accepts /plaintext, which lets a dialer claim any peer ID, so
the security options are always given explicitly. The identity is the node's own Ed25519 key
file (the same key signs model updates).
"""

from __future__ import annotations

import logging

import multiaddr
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PROTOCOL = "/p2pfl/update/1.0.0"


def key_pair(key: Ed25519PrivateKey):  # -> libp2p.crypto.keys.KeyPair
    """The libp2p key pair of our Ed25519 key (same peer ID)."""
    from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pKey
    from libp2p.crypto.keys import KeyPair

    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    private = Libp2pKey.new(raw)
    return KeyPair(private, private.get_public_key())


def make_host(key: Ed25519PrivateKey):  # -> libp2p.host.basic_host.BasicHost
    """A host with Noise-only security, Yamux-only muxing and max_connections_per_peer=1."""
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
    from libp2p.stream_muxer.yamux.yamux import Yamux

    pair = key_pair(key)
    return new_host(
        key_pair=pair,
        sec_opt={NOISE: Noise(pair, noise_privkey=x25519_pair().private_key)},
        muxer_opt={TProtocol(YAMUX): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


def peer_id(text: str):  # -> libp2p.peer.id.ID
    """libp2p ID object from a base58 peer ID string."""
    from libp2p.peer.id import ID

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
