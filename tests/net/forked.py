"""`p2pfl node` processes forked from the test process: the same `main(["node", ...])` a
`python -m p2pfl node` runs, in a real child process with its own sockets, signals and exit
code, without paying the interpreter's start and the imports again (torch, scikit-learn,
libp2p: about 3 s of CPU each, most of the suite's time on a 2-core machine).

`ForkedNode` answers what the tests ask of a `subprocess.Popen`: pid, poll, wait, returncode,
send_signal, kill, terminate.
"""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path


class ForkedNode:
    """`p2pfl node --config CONFIG` in a forked child, its stdout and stderr appended to `log`."""

    def __init__(self, config: Path, log: Path):
        self.args = ["node", "--config", str(config)]
        self.returncode: int | None = None
        log.touch()  # there when the test reads it, as when Popen's parent opens it
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into the test process
            _run_child(self.args, log)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_child(args: list[str], log: Path) -> None:
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        faulthandler.disable()  # pytest's points at its own capture file
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from p2pfl.cli import main

        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the node's log
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
