"""The local admin endpoint: a Unix socket `admin.sock` in the state folder, mode 0600, through
which `p2pfl status` asks the running node for its status.

The node reads nothing from a client: on each connection it writes its status as one JSON
document and closes, so the endpoint has no request to parse. Only the node's own user (and
root) can connect: the socket is 0600 inside the state folder. At most MAX_CLIENTS are answered
at once, each within WRITE_TIMEOUT seconds. A socket path longer than the kernel's limit
(about 107 bytes) is reached through /proc/self/fd, so a deep state folder still works.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import trio

SOCKET = "admin.sock"
MAX_CLIENTS = 4
WRITE_TIMEOUT = 5.0
MAX_ANSWER = 4 << 20  # bytes a client reads at most
SHORT_PATH = 100  # bytes: longer socket paths go through /proc/self/fd


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET


async def serve(state_dir: Path, snapshot: Callable[[], dict], *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer every connection with `snapshot()` as JSON until cancelled; the socket file is
    removed at the end. The caller holds the state folder's lock, so a stale socket is its own."""
    path = socket_path(state_dir)
    _remove(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    limit = trio.CapacityLimiter(MAX_CLIENTS)

    async def answer(stream: trio.SocketStream) -> None:
        async with limit:
            with trio.move_on_after(WRITE_TIMEOUT):
                try:
                    await stream.send_all(json.dumps(snapshot()).encode() + b"\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await trio.aclose_forcefully(stream)

    try:
        with _reachable(path) as address:
            await sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(MAX_CLIENTS)
        task_status.started()
        await trio.serve_listeners(answer, [trio.SocketListener(sock)])
    finally:
        sock.close()
        _remove(path)


def query(state_dir: Path, timeout: float = 3.0) -> dict | None:
    """The running node's status, or None when no node answers at this state folder."""
    path = socket_path(state_dir)
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            with _reachable(path) as address:
                client.connect(address)
            data = _read_all(client)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) or isinstance(exc, TimeoutError):
                return None
            raise
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _read_all(client: socket.socket) -> bytes:
    chunks, size = [], 0
    while size < MAX_ANSWER:
        chunk = client.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@contextmanager
def _reachable(path: Path):
    """An address for `path` within the kernel's limit: the path itself, or the same file
    through an O_PATH handle on its folder."""
    if len(os.fsencode(path)) <= SHORT_PATH:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
