"""Keys, key files, signatures and peer IDs."""

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.errors import UserError
from p2pfl.files.keys import load_key, save_key
from p2pfl.protocol.base58 import b58decode, b58encode
from p2pfl.protocol.identity import (
    Ed25519PrivateKey,
    InvalidKey,
    InvalidPeerId,
    generate_key,
    is_peer_id,
    key_from_pem,
    key_to_pem,
    peer_id_from_public_key,
    peer_id_of,
    public_key_bytes,
    public_key_from_peer_id,
    sign,
    verify,
)

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=200)


def key_from_seed(n: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(n.to_bytes(32, "big"))


def raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


# ---- base58


def test_base58_known_vectors():
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"
    assert b58encode(b"\0\0\x01") == "112"
    assert b58encode(b"") == ""
    assert b58decode("StV1DL6CwTryKyV") == b"hello world"
    assert b58decode("112") == b"\0\0\x01"


@SETTINGS
@given(st.binary(max_size=64))
def test_base58_round_trip(data):
    assert b58decode(b58encode(data)) == data


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc+", "é"])
def test_base58_rejects_characters_outside_the_alphabet(bad):
    with pytest.raises(ValueError, match="not base58"):
        b58decode(bad)


# ---- peer IDs


@pytest.mark.parametrize("seed", [1, 2, 3, 2**255 - 19, 2**256 - 1])
def test_peer_id_equals_py_libp2p(seed):
    from libp2p.crypto.ed25519 import Ed25519PrivateKey as Libp2pPrivateKey
    from libp2p.peer.id import ID

    ours = key_from_seed(seed)
    theirs = Libp2pPrivateKey.new(raw_private(ours))
    their_id = ID.from_pubkey(theirs.get_public_key())
    assert peer_id_of(ours) == their_id.to_base58()
    assert their_id.to_base58().startswith("12D3KooW")
    # and back: libp2p extracts from our string the key we extract
    extracted = ID.from_base58(peer_id_of(ours)).extract_public_key()
    assert extracted.to_bytes() == public_key_bytes(public_key_from_peer_id(peer_id_of(ours)))
    # a signature of ours verifies with libp2p's key object
    assert extracted.verify(b"round 7", sign(ours, b"round 7"))


def test_peer_id_round_trips_to_the_public_key():
    key = generate_key()
    pid = peer_id_of(key)
    assert len(pid) == 52
    assert public_key_bytes(public_key_from_peer_id(pid)) == public_key_bytes(key.public_key())
    assert peer_id_from_public_key(key.public_key()) == pid
    assert is_peer_id(pid)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("12D3KooW" + "0" * 44, "not base58"),
        ("Qm" + "1" * 44, "identity multihash of an Ed25519"),
        ("1" + peer_id_of(key_from_seed(5)), "identity multihash"),
        (peer_id_of(key_from_seed(5))[:-1], "identity multihash"),
        ("1" * 200, "at most 128"),
    ],
)
def test_malformed_peer_ids_are_rejected(text, reason):
    with pytest.raises(InvalidPeerId, match=reason):
        public_key_from_peer_id(text)
    assert not is_peer_id(text)


def test_non_string_peer_id_is_rejected():
    assert not is_peer_id(b"12D3KooW")
    assert not is_peer_id(None)


def test_sign_and_verify():
    key, other = key_from_seed(10), key_from_seed(11)
    sig = sign(key, b"data")
    assert len(sig) == 64
    assert verify(key.public_key(), b"data", sig)
    assert not verify(key.public_key(), b"datA", sig)
    assert not verify(other.public_key(), b"data", sig)
    assert not verify(key.public_key(), b"data", sig[:63] + bytes([sig[63] ^ 1]))


# ---- key files


def test_key_file_is_0600_whatever_the_umask(tmp_path):
    for umask in (0o000, 0o022, 0o077):
        old = os.umask(umask)
        try:
            path = tmp_path / f"node-{umask:o}.key"
            save_key(generate_key(), path)
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "node-0.key",
        "node-22.key",
        "node-77.key",
    ]


def test_key_file_round_trip(tmp_path):
    key = generate_key()
    save_key(key, tmp_path / "k")
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k").read_bytes()
    assert raw_private(load_key(tmp_path / "k")) == raw_private(key)


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "k"
    first, second = generate_key(), generate_key()
    save_key(first, path)
    with pytest.raises(FileExistsError):
        save_key(second, path)
    assert raw_private(load_key(path)) == raw_private(first)
    save_key(second, path, overwrite=True)
    assert raw_private(load_key(path)) == raw_private(second)
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_load_refuses_a_key_others_can_access(tmp_path, mode):
    path = tmp_path / "k"
    save_key(generate_key(), path)
    path.chmod(mode)
    with pytest.raises(UserError, match=f"chmod 600 {path}") as err:
        load_key(path)
    assert f"{mode:04o}" in str(err.value)
    path.chmod(0o600)
    load_key(path)


def test_load_accepts_a_stricter_mode(tmp_path):
    path = tmp_path / "k"
    save_key(generate_key(), path)
    path.chmod(0o400)
    load_key(path)


def test_passphrase_round_trip_and_errors(tmp_path):
    key = generate_key()
    path = tmp_path / "k"
    save_key(key, path, passphrase=b"correct horse")
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert raw_private(load_key(path, b"correct horse")) == raw_private(key)
    with pytest.raises(UserError, match="wrong passphrase"):
        load_key(path, b"battery staple")
    with pytest.raises(UserError, match="encrypted: a passphrase is needed"):
        load_key(path)
    plain = tmp_path / "plain"
    save_key(key, plain)
    with pytest.raises(UserError, match="not encrypted, but a passphrase was given"):
        load_key(plain, b"correct horse")
    with pytest.raises(ValueError, match="empty"):
        save_key(key, tmp_path / "k2", passphrase=b"")


def write_private(path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def test_load_rejects_files_that_are_not_ed25519_keys(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_key(tmp_path / "missing")
    write_private(tmp_path / "junk", b"hello\n")
    with pytest.raises(UserError, match="not a PEM private key"):
        load_key(tmp_path / "junk")
    write_private(tmp_path / "empty", b"")
    with pytest.raises(UserError, match="not a PEM private key"):
        load_key(tmp_path / "empty")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(tmp_path / "ec", pem)
    with pytest.raises(
        UserError, match=r"elliptic-curve \(secp256r1\) key; p2pfl needs an Ed25519 key"
    ):
        load_key(tmp_path / "ec")
    public_pem = (
        generate_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    write_private(tmp_path / "pub", public_pem)
    with pytest.raises(UserError, match="not a PEM private key"):
        load_key(tmp_path / "pub")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(UserError, match="not a regular file"):
        load_key(tmp_path / "dir")


def test_pem_round_trip_without_files():
    key = generate_key()
    assert raw_private(key_from_pem(key_to_pem(key, b"pw"), b"pw")) == raw_private(key)
    with pytest.raises(InvalidKey, match="^my key is encrypted: a passphrase is needed$"):
        key_from_pem(key_to_pem(key, b"pw"), None, "my key")
    with pytest.raises(InvalidKey, match="^wrong passphrase for key$"):
        key_from_pem(key_to_pem(key, b"pw"), b"other")
    assert not issubclass(InvalidKey, (UserError, ValueError))
