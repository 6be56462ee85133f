"""Crash-safe file writes: temp file in the same folder, fsync, rename over the target.

Readers see the old file or the whole new one, never a part. The temp file is created with the
final permissions from the start (O_EXCL, then fchmod against the umask), so a 0600 key file is
never readable by others, not even briefly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def open_atomic(path: Path, text: bool = True, perms: int = 0o644, overwrite: bool = True) -> Iterator[IO]:
    """Yield a file to write; on success it replaces `path`, on error it is removed.

    With `overwrite=False` an existing `path` is left alone and FileExistsError is raised.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perms)
    try:
        os.fchmod(fd, perms)
        with os.fdopen(fd, "w" if text else "wb", **({"newline": ""} if text else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_overwrite(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes | str, perms: int = 0o644, overwrite: bool = True) -> None:
    """Write all of `data` to `path` atomically (see open_atomic)."""
    with open_atomic(path, text=isinstance(data, str), perms=perms, overwrite=overwrite) as fh:
        fh.write(data)


def _link_no_overwrite(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # atomic, and fails if `path` exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then move
        if path.exists():
            raise FileExistsError(f"{path} already exists") from None
        os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
