"""Key files: an Ed25519 key as PKCS8 PEM, mode 0600, optionally encrypted with a passphrase."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.protocol.identity import Ed25519PrivateKey, InvalidKey, key_from_pem, key_to_pem

KEY_FILE_MODE = 0o600
MAX_KEY_FILE_SIZE = 64 * 1024


def save_key(
    key: Ed25519PrivateKey, path: Path, passphrase: bytes | None = None, overwrite: bool = False
) -> None:
    """Write the key as PKCS8 PEM, mode 0600, atomically; encrypted if a passphrase is given.

    Raises FileExistsError if the file exists and `overwrite` is false.
    """
    write_atomic(Path(path), key_to_pem(key, passphrase), KEY_FILE_MODE, overwrite)


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
    try:
        return key_from_pem(data, passphrase, f"key file {path}")
    except InvalidKey as e:
        raise UserError(str(e)) from None
