"""The keygen, id and inspect commands."""

import stat

import pytest
import torch

from p2pfl.commands import inspect, key_peer_id, keygen
from p2pfl.errors import UserError
from p2pfl.files.keys import load_key
from p2pfl.protocol.codec import encode
from p2pfl.protocol.consortium import consortium_of
from p2pfl.protocol.identity import peer_id_of

pytestmark = pytest.mark.filterwarnings("ignore:The given buffer is not writable")
CONSORTIUM = consortium_of({"training": {"lr": 0.1}})


def test_keygen_writes_a_0600_key_and_returns_its_peer_id(tmp_path):
    path = tmp_path / "node.key"
    pid = keygen(path, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert peer_id_of(load_key(path)) == pid
    with pytest.raises(UserError, match="already exists; refusing to overwrite"):
        keygen(path, None)
    assert peer_id_of(load_key(path)) == pid


def test_keygen_with_a_passphrase_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "node.key"
    with pytest.raises(UserError, match="environment variable P2PFL_TEST_PASS"):
        keygen(path, "P2PFL_TEST_PASS")
    assert not path.exists()
    monkeypatch.setenv("P2PFL_TEST_PASS", "s3cret")
    pid = keygen(path, "P2PFL_TEST_PASS")
    assert peer_id_of(load_key(path, b"s3cret")) == pid
    with pytest.raises(UserError, match="passphrase is needed"):
        load_key(path)


def test_keygen_into_a_missing_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        keygen(tmp_path / "no" / "node.key", None)


def write_update(tmp_path, key_path):
    keygen(key_path, None)
    key = load_key(key_path)
    blob = encode(
        key,
        consortium=CONSORTIUM,
        round=12,
        fingerprint="cd" * 32,
        num_samples=640,
        weight=0.125,
        tensors={
            "layer.weight": torch.ones(4, 3),
            "layer.bias": torch.zeros(4, dtype=torch.bfloat16),
        },
        metrics={"loss": 0.5},
    )
    path = tmp_path / "update.bin"
    path.write_bytes(blob)
    return path, peer_id_of(key)


def test_key_peer_id_reads_plain_and_encrypted_keys(tmp_path, monkeypatch):
    pid = keygen(tmp_path / "plain.key", None)
    assert key_peer_id(tmp_path / "plain.key", None) == pid
    monkeypatch.setenv("P2PFL_TEST_PASS", "s3cret")
    pid = keygen(tmp_path / "secret.key", "P2PFL_TEST_PASS")
    assert key_peer_id(tmp_path / "secret.key", "P2PFL_TEST_PASS") == pid
    with pytest.raises(UserError, match="key file .*secret.key is encrypted: a passphrase is needed"):
        key_peer_id(tmp_path / "secret.key", None)
    monkeypatch.setenv("P2PFL_TEST_PASS", "wrong")
    with pytest.raises(UserError, match="wrong passphrase for key file .*secret.key"):
        key_peer_id(tmp_path / "secret.key", "P2PFL_TEST_PASS")
    with pytest.raises(UserError, match="key file .*missing.key does not exist"):
        key_peer_id(tmp_path / "missing.key", None)


def test_inspect_reports_header_tensors_and_checks(tmp_path):
    path, pid = write_update(tmp_path, tmp_path / "k")
    result = inspect(path)
    assert result.valid
    report = result.text
    assert f"sender:        {pid}" in report
    assert "round:         12" in report
    assert f"consortium:    {CONSORTIUM.id.hex()}" in report
    assert f"section training: {CONSORTIUM.sections['training'][:8].hex()}" in report
    assert "signature:     OK" in report
    assert "payload:       OK" in report
    assert "metric loss: 0.5" in report
    lines = report.splitlines()
    assert any(line.split() == ["layer.weight", "float32", "[4,", "3]", "48"] for line in lines)
    assert any(line.split() == ["layer.bias", "bfloat16", "[4]", "8"] for line in lines)
    assert any(line.split() == ["total", "56"] for line in lines)


def test_inspect_reports_a_bad_signature_and_a_corrupt_payload(tmp_path):
    path, _ = write_update(tmp_path, tmp_path / "k")
    blob = bytearray(path.read_bytes())
    blob[10] ^= 1  # inside the signature
    path.write_bytes(blob)
    result = inspect(path)
    assert not result.valid
    assert "signature:     INVALID" in result.text and "payload:       OK" in result.text
    blob[10] ^= 1
    blob[-1] ^= 1  # inside the last tensor
    path.write_bytes(blob)
    result = inspect(path)
    assert not result.valid
    assert "signature:     OK" in result.text and "payload:       CORRUPT" in result.text


def test_inspect_of_something_else(tmp_path):
    (tmp_path / "junk").write_bytes(b"not an update")
    with pytest.raises(UserError, match="is not a valid model update: .*shorter than"):
        inspect(tmp_path / "junk")
    with pytest.raises(UserError, match="cannot read"):
        inspect(tmp_path / "missing")
