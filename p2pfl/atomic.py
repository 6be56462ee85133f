"""Crash-safe file writes: temp file in the same folder, fsync, rename over the target."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def open_atomic(path: Path, text: bool = True, perms: int = 0o644) -> Iterator[IO]:
    """Yield a file to write; on success it replaces `path` in one step, else it is removed.

    The temp file is created with `perms` from the start, so a 0600 file is never readable
    by others, not even briefly.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perms)
    ok = False
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"newline": ""} if text else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        ok = True
        _fsync_dir(path.parent)
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_atomic(path: Path, data: bytes | str, perms: int = 0o644) -> None:
    """Write all of `data` to `path` atomically."""
    with open_atomic(path, text=isinstance(data, str), perms=perms) as fh:
        fh.write(data)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
