"""Crash-safe file writes: temp file in the same folder, fsync, rename over the target.

Readers see the old file or the whole new one, never a part. The temp file is created with the
final permissions from the start (O_EXCL, then fchmod against the umask), so a 0600 key file is
never readable by others, not even briefly. A crash leaves at most a temp file
(`.NAME.<12 hex>.tmp`), which `remove_stale_temps` deletes (call it only while no writer runs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # the temp files open_atomic creates


@contextlib.contextmanager
def open_atomic(path: Path, text: bool = True, perms: int = 0o644, overwrite: bool = True,
                before_replace: Callable[[], None] | None = None) -> Iterator[IO]:
    """Yield a file to write; on success it replaces `path`, on error it is removed.

    With `overwrite=False` an existing `path` is left alone and FileExistsError is raised.
    `before_replace` runs once the temp file is complete and synced, just before it goes in place.
    """
    path = Path(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perms)
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"newline": ""} if text else {})) as fh:
            os.fchmod(fd, perms)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_overwrite(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def temp_path(path: Path) -> Path:
    """A fresh temp file name next to `path` (matches TEMP_NAME)."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


def remove_stale_temps(folder: Path) -> list[str]:
    """Delete the temp files that interrupted writes left in `folder`; returns their names."""
    removed = []
    for entry in sorted(Path(folder).iterdir()):
        if TEMP_NAME.fullmatch(entry.name) and not entry.is_dir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry.name)
    return removed


def os_error_text(exc: OSError) -> str:
    """`No space left on device (ENOSPC)`: the reason and the errno name, for one-line errors."""
    name = errno.errorcode.get(exc.errno or 0)
    return f"{exc.strerror} ({name})" if exc.strerror and name else str(exc)


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


def fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (best effort: some file systems refuse it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
