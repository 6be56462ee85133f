"""Node identity: Ed25519 keys in PEM files, signatures, and libp2p peer IDs.

A libp2p peer ID for an Ed25519 key is the base58btc text of the identity multihash
(code 0x00, length 36) of the protobuf PublicKey {Type: Ed25519 (1), Data: 32 raw bytes},
whose encoding is the bytes 08 01 12 20 followed by the key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.protocol.base58 import b58decode, b58encode

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "InvalidPeerId",
    "generate_key",
    "save_key",
    "load_key",
    "passphrase_from_env",
    "sign",
    "verify",
    "public_key_bytes",
    "peer_id_of",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "is_peer_id",
]

KEY_FILE_MODE = 0o600
MAX_KEY_FILE_SIZE = 64 * 1024
MAX_PEER_ID_LENGTH = 128  # Ed25519 peer IDs are 52 characters; bounds the base58 decode cost

_MULTIHASH_PREFIX = bytes([0x00, 36])  # identity hash, 36 bytes of digest
_PROTOBUF_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])  # Type=Ed25519, Data=<32 bytes>
_PEER_ID_PREFIX = _MULTIHASH_PREFIX + _PROTOBUF_PREFIX


class InvalidPeerId(ValueError):
    """A string that is not the peer ID of an Ed25519 key."""


def generate_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def save_key(
    key: Ed25519PrivateKey, path: Path, passphrase: bytes | None = None, overwrite: bool = False
) -> None:
    """Write the key as PKCS8 PEM, mode 0600, atomically; encrypted if a passphrase is given.

    Raises FileExistsError if the file exists and `overwrite` is false.
    """
    if passphrase is not None and not passphrase:
        raise ValueError("the passphrase is empty")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomic(Path(path), pem, KEY_FILE_MODE, overwrite)


def passphrase_from_env(env: str | None, key: Path) -> bytes | None:
    """The passphrase for key file `key` held in environment variable `env` (None when no
    variable is named); an unset or empty variable is a UserError naming both."""
    if not env:
        return None
    value = os.environ.get(env)
    if not value:
        raise UserError(f"environment variable {env} (the passphrase for key file {key}) is not set")
    return value.encode()


def load_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 key written by `save_key`; every problem raises UserError saying why.

    A key file that group or others may read or write is refused.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(
            f"key file {path} does not exist (create one with `p2pfl keygen`)"
        ) from None
    except OSError as e:
        raise UserError(f"cannot read key file {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UserError(
            f"key file {path} has permissions {mode:04o}, so other users may read or change it; "
            f"run `chmod 600 {path}`"
        )
    if st.st_size > MAX_KEY_FILE_SIZE:
        raise UserError(f"key file {path} is not a PEM private key (it is {st.st_size} bytes)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read key file {path}: {e.strerror}") from None
    key = _parse_pem(data, passphrase, path)
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"key file {path} holds {_key_kind(key)}; p2pfl needs an Ed25519 key")
    return key


def _parse_pem(data: bytes, passphrase: bytes | None, path: Path) -> object:
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and not passphrase:
        raise UserError(f"key file {path} is encrypted: a passphrase is needed")
    if not encrypted and passphrase and b"-----BEGIN" in data:
        raise UserError(f"key file {path} is not encrypted, but a passphrase was given")
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except UnsupportedAlgorithm:
        raise UserError(f"key file {path} holds a key type p2pfl does not support") from None
    except (ValueError, TypeError):
        if encrypted:
            raise UserError(f"wrong passphrase for key file {path}") from None
        raise UserError(f"key file {path} is not a PEM private key") from None


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
