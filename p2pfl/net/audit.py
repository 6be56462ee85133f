"""The audit log: `audit.jsonl` in the state folder, append-only and hash-chained.

One JSON line per event, for a data-protection officer to check with `p2pfl audit verify`:

    {"seq": n, "time": "2025-01-31T12:00:00.123Z", "event": "update_accepted",
     <fields, sorted by key>, "prev": <hash of line n-1>, "hash": <this line's hash>}

    hash = hex sha256(prev + canonical JSON of the line without "hash")   (UTF-8)

with canonical JSON as in p2pfl.protocol.consortium (keys sorted, no spaces) and, for line 1,
prev = GENESIS (64 zeros). The line itself is written in the fixed key order above (JSON, ASCII,
no spaces), so every byte of it is checked, not only its content. Field values are str, int,
finite float, bool, None or lists of str: digests, peer IDs, names, never keys or passwords.

Each line is written with one write and fsynced, so a crash leaves at most one torn last line;
the next open cuts it off and records the cut (event `torn_line_removed`). A line that was fully
written but lost only its newline is kept.

What the chain shows: a line edited, removed, inserted or moved is named by `verify`, unless
every later line was rewritten too (anyone can recompute the hashes: there is no key), and lines
cut off the end leave no trace. Against both, keep the last line's hash (`Verification.last_hash`)
somewhere the node cannot write, e.g. in the DPO's own records, and compare it later.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from p2pfl.atomic import fsync_dir, os_error_text
from p2pfl.errors import StateWriteError, UserError
from p2pfl.protocol.consortium import canonical_json

AUDIT = "audit.jsonl"
GENESIS = "0" * 64  # the "prev" of line 1
HEAD = ("seq", "time", "event")  # the keys every line starts with, in this order
TAIL = ("prev", "hash")  # ... and ends with
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
TAIL_BLOCK = 1 << 16  # bytes read at a time from the end when reopening


@dataclass(frozen=True)
class Verification:
    """The result of `verify`: `first_bad` is a 1-based line number, None when ok."""

    ok: bool
    lines: int
    first_bad: int | None
    reason: str
    last_hash: str = GENESIS  # of the last good line when ok (keep it to notice a cut tail)


class AuditLog:
    """Appends hash-chained events to `state_dir/audit.jsonl` (see module doc).

    Opening continues the chain from the file's last good line. Write errors raise
    StateWriteError naming the file. `clock` gives the wall-clock time (injectable for tests)."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time):
        self.path = Path(state_dir) / AUDIT
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._error("cannot open the audit log", exc) from None
        try:
            self._seq, self._prev, torn = _continue(self._fd)
            fsync_dir(self.path.parent)
        except OSError as exc:
            os.close(self._fd)
            raise self._error("cannot repair the audit log", exc) from None
        if torn:
            self.record("torn_line_removed", bytes=len(torn),
                        digest=hashlib.sha256(torn).hexdigest())

    def record(self, event: str, **fields: object) -> str:
        """Append one event line, fsynced; returns its hash. ValueError for a field that is not
        allowed (a programming error: see the module doc)."""
        _check_fields(event, fields)
        with self._lock:
            entry: dict[str, object] = {"seq": self._seq + 1, "time": _iso(self.clock()),
                                        "event": event, **fields, "prev": self._prev}
            entry["hash"] = line_hash(entry)
            try:
                _write_all(self._fd, _line(entry))
                os.fsync(self._fd)
            except OSError as exc:
                raise self._error("cannot append to the audit log", exc) from None
            self._seq, self._prev = entry["seq"], entry["hash"]  # type: ignore[assignment]
            return self._prev

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _error(self, what: str, exc: OSError) -> StateWriteError:
        return StateWriteError(f"{self.path}: {what}: {os_error_text(exc)}")


def verify(path: Path) -> Verification:
    """Check every line of an audit log: JSON in the form written, seq consecutive from 1, prev
    the previous line's hash, hash right. UserError if the file cannot be read."""
    path = Path(path)
    prev, count = GENESIS, 0
    try:
        with open(path, "rb") as fh:
            for count, raw in enumerate(fh, start=1):
                reason = check_line(raw, count, prev)
                if reason:
                    return Verification(False, _count_rest(fh, count), count, reason)
                prev = json.loads(raw)["hash"]
    except FileNotFoundError:
        raise UserError(f"{path}: no audit log here (is it a node's state folder?)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the audit log: {os_error_text(exc)}") from None
    return Verification(True, count, None, "chain intact", prev)


def check_line(raw: bytes, seq: int, prev: str) -> str:
    """Why `raw` (one line, with its newline) cannot be line `seq` after a line hashed `prev`;
    "" when it can."""
    if not raw.endswith(b"\n"):
        return ("torn last line (no newline at the end): the node stopped mid-write; "
                "its next start cuts it off")
    entry = _parse(raw[:-1])
    if entry is None:
        return "not a JSON object with seq, time, event, prev and hash"
    if entry["seq"] != seq:
        return f"seq is {entry['seq']}, expected {seq}: a line was removed, inserted or moved"
    if entry["prev"] != prev:
        where = f"line {seq - 1}'s hash" if seq > 1 else "the start of the chain"
        return f"prev does not match {where}: a line before it was changed, removed or inserted"
    if entry["hash"] != line_hash(entry):
        return "hash does not match the line's content: the line was edited"
    if _line(entry) != raw:
        return "not written as p2pfl writes it (spacing, key order or escapes changed)"
    return ""


def line_hash(entry: dict[str, object]) -> str:
    """hex sha256(prev + canonical JSON of `entry` without its "hash")."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256((str(entry["prev"]) + canonical_json(body, "audit line")).encode()).hexdigest()


# -- line form ------------------------------------------------------------------------------


def _line(entry: dict[str, object]) -> bytes:
    """The bytes of a line: HEAD keys, the other fields sorted, TAIL keys; ASCII JSON, newline."""
    fields = sorted(k for k in entry if k not in HEAD + TAIL)
    ordered = {k: entry[k] for k in (*HEAD, *fields, *TAIL)}
    return (json.dumps(ordered, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
            + "\n").encode()


def _parse(text: bytes) -> dict[str, object] | None:
    """The entry of one line without its newline, or None if it is not a well-formed one."""
    try:
        entry = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or any(k not in entry for k in HEAD + TAIL):
        return None
    if type(entry["seq"]) is not int or not all(isinstance(entry[k], str)
                                                 for k in ("time", "event", "prev", "hash")):
        return None
    return entry


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _check_fields(event: str, fields: dict[str, object]) -> None:
    if not FIELD_NAME.fullmatch(event):
        raise ValueError(f"audit event name {event!r} must match {FIELD_NAME.pattern}")
    for key, value in fields.items():
        if key in HEAD + TAIL or not FIELD_NAME.fullmatch(key):
            raise ValueError(f"audit field {key!r} is reserved or not a name like {FIELD_NAME.pattern}")
        ok = (value is None or type(value) in (str, int, bool)
              or (type(value) is float and math.isfinite(value))  # type: ignore[arg-type]
              or (type(value) is list and all(type(v) is str for v in value)))  # type: ignore[union-attr]
        if not ok:
            raise ValueError(f"audit field {key!r} is {type(value).__name__}; allowed: str, int, "
                             "finite float, bool, None, list of str")


def _iso(seconds: float) -> str:
    """`2025-01-31T12:00:00.123Z`: UTC, milliseconds."""
    millis = int(seconds * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


# -- reopening ------------------------------------------------------------------------------


def _continue(fd: int) -> tuple[int, str, bytes]:
    """(seq, hash) of the open log's last well-formed line, and the torn bytes cut off its end
    (b"" if none). A torn line that lacks only its newline gets one and is kept."""
    size = os.fstat(fd).st_size
    lines = _lines_from_end(fd, size)
    last = next(lines, b"")
    torn = b"" if last.endswith(b"\n") else last
    seq, prev = 0, GENESIS
    for raw in itertools.chain([] if torn else [last], lines):
        entry = _parse(raw[:-1])
        if entry is not None:
            seq, prev = entry["seq"], entry["hash"]  # type: ignore[assignment]
            break
    if torn and not check_line(torn + b"\n", seq + 1, prev):
        _write_all(fd, b"\n")  # the line is whole: only its newline was lost
        os.fsync(fd)
        return seq + 1, _parse(torn)["hash"], b""  # type: ignore[index, return-value]
    if torn:
        os.ftruncate(fd, size - len(torn))
        os.fsync(fd)
    return seq, prev, torn


def _lines_from_end(fd: int, size: int) -> Iterator[bytes]:
    """The file's lines, last first, read TAIL_BLOCK bytes at a time; each keeps its newline
    (only the last line of the file may lack one)."""
    end, carry = size, b""
    while end > 0:
        start = max(0, end - TAIL_BLOCK)
        carry = os.pread(fd, end - start, start) + carry
        end = start
        while (cut := carry.rfind(b"\n", 0, len(carry) - 1)) >= 0:  # the newline before the last line
            yield carry[cut + 1:]
            carry = carry[:cut + 1]
    if carry:
        yield carry


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _count_rest(fh: BinaryIO, done: int) -> int:
    """Lines read so far plus those left in `fh`."""
    return done + sum(1 for _ in fh)
