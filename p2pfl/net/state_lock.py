"""One node per state folder: an exclusive flock on STATE_DIR/.lock, holding the owner's pid.

The kernel releases the lock when the holder closes it or dies (kill -9 included), so a stale
lock file never blocks a restart. The file itself stays; only the lock on it matters.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from p2pfl.atomic import os_error_text
from p2pfl.errors import InUseError, StateWriteError

LOCK_FILE = ".lock"


class StateLock:
    """`with StateLock(state_dir):` (or acquire/release) holds the state folder for this process.

    InUseError if another process (or another StateLock in this one) holds it.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this pid into the lock file; never waits."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateWriteError(f"{self.path}: cannot create the lock file: {os_error_text(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise InUseError(f"{self.state_dir} is used by another p2pfl node (pid {holder}); "
                             "one node per state folder") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _write_pid(fd)

    def release(self) -> None:
        """Give the lock up (closing the file releases it); safe to call twice."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(state_dir: Path) -> str | None:
    """The pid (text, or "unknown") of the node holding `state_dir`, None if none does. Creates
    and writes nothing; the probe holds a shared lock for an instant only."""
    try:
        fd = os.open(Path(state_dir) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (or no folder): no node has run there since
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd)
    finally:
        os.close(fd)  # closing releases the probe's own lock
    return None


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int(os.pread(fd, 32, 0).decode().strip()))
    return "unknown"


def _write_pid(fd: int) -> None:
    """Best effort: the pid only makes the InUseError message more useful."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
