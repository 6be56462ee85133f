"""Node identity: Ed25519 keys as PEM bytes, signatures, and libp2p peer IDs.

A libp2p peer ID for an Ed25519 key is the base58btc text of the identity multihash
(code 0x00, length 36) of the protobuf PublicKey {Type: Ed25519 (1), Data: 32 raw bytes},
whose encoding is the bytes 08 01 12 20 followed by the key.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p2pfl.protocol.base58 import b58decode, b58encode

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "InvalidPeerId",
    "InvalidKey",
    "generate_key",
    "key_to_pem",
    "key_from_pem",
    "sign",
    "verify",
    "public_key_bytes",
    "peer_id_of",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "is_peer_id",
]

MAX_PEER_ID_LENGTH = 128  # Ed25519 peer IDs are 52 characters; bounds the base58 decode cost

_MULTIHASH_PREFIX = bytes([0x00, 36])  # identity hash, 36 bytes of digest
_PROTOBUF_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])  # Type=Ed25519, Data=<32 bytes>
_PEER_ID_PREFIX = _MULTIHASH_PREFIX + _PROTOBUF_PREFIX


class InvalidPeerId(Exception):
    """A string that is not the peer ID of an Ed25519 key."""


class InvalidKey(Exception):
    """Bytes that are not a usable Ed25519 private key (PEM); the text says why."""


def generate_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def key_to_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    """The key as PKCS8 PEM, encrypted if a passphrase is given (ValueError if it is empty)."""
    if passphrase is not None and not passphrase:
        raise ValueError("the passphrase is empty")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def key_from_pem(data: bytes, passphrase: bytes | None = None, source: str = "key") -> Ed25519PrivateKey:
    """The Ed25519 key in PEM `data`; InvalidKey, starting with `source`, says what is wrong."""
    key = _parse_pem(data, passphrase, source)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"{source} holds {_key_kind(key)}; p2pfl needs an Ed25519 key")
    return key


def _parse_pem(data: bytes, passphrase: bytes | None, source: str) -> object:
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and not passphrase:
        raise InvalidKey(f"{source} is encrypted: a passphrase is needed")
    if not encrypted and passphrase and b"-----BEGIN" in data:
        raise InvalidKey(f"{source} is not encrypted, but a passphrase was given")
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except UnsupportedAlgorithm:
        raise InvalidKey(f"{source} holds a key type p2pfl does not support") from None
    except (ValueError, TypeError):
        if encrypted:
            raise InvalidKey(f"wrong passphrase for {source}") from None
        raise InvalidKey(f"{source} is not a PEM private key") from None


def _key_kind(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an elliptic-curve ({key.curve.name}) key"
    return f"a {type(key).__name__.lstrip('_')}"


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of `data`."""
    return key.sign(data)


def verify(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    try:
        public_key.verify(bytes(signature), data)
    except InvalidSignature:
        return False
    return True


def public_key_bytes(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def peer_id_from_public_key(public_key: Ed25519PublicKey) -> str:
    """The libp2p peer ID (base58btc text, '12D3KooW...') of an Ed25519 public key."""
    return b58encode(_PEER_ID_PREFIX + public_key_bytes(public_key))


def peer_id_of(key: Ed25519PrivateKey) -> str:
    """The libp2p peer ID of the node that holds `key`."""
    return peer_id_from_public_key(key.public_key())


def public_key_from_peer_id(peer_id: str) -> Ed25519PublicKey:
    """The public key embedded in an Ed25519 peer ID; InvalidPeerId says what is wrong."""
    if not isinstance(peer_id, str):
        raise InvalidPeerId(f"a peer ID must be a string, not {type(peer_id).__name__}")
    if not peer_id:
        raise InvalidPeerId("the peer ID is empty")
    if len(peer_id) > MAX_PEER_ID_LENGTH:
        raise InvalidPeerId(f"the peer ID is {len(peer_id)} characters long (at most 128)")
    try:
        raw = b58decode(peer_id)
    except ValueError as e:
        raise InvalidPeerId(f"peer ID {peer_id!r} is not base58: {e}") from None
    if len(raw) != len(_PEER_ID_PREFIX) + 32 or not raw.startswith(_PEER_ID_PREFIX):
        raise InvalidPeerId(
            f"peer ID {peer_id!r} is not the identity multihash of an Ed25519 public key "
            "(expected a 52-character ID starting with '12D3KooW')"
        )
    if b58encode(raw) != peer_id:
        raise InvalidPeerId(f"peer ID {peer_id!r} is not in canonical base58 form")
    try:
        return Ed25519PublicKey.from_public_bytes(raw[len(_PEER_ID_PREFIX) :])
    except ValueError as e:
        raise InvalidPeerId(f"peer ID {peer_id!r} holds an unusable public key: {e}") from None


def is_peer_id(text: object) -> bool:
    """True if `text` is a well-formed Ed25519 peer ID."""
    try:
        public_key_from_peer_id(text)  # type: ignore[arg-type]
    except InvalidPeerId:
        return False
    return True
