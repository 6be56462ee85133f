"""The node's state on disk: checkpoint.pt, checkpoint.prev.pt and metrics.jsonl.

A checkpoint holds the start of a round (model, optimizer, RNG), the metrics.jsonl row of the
round that ended with it, and a SHA-256 digest over all of that, checked on load. `save`
keeps the checkpoint it replaces as checkpoint.prev.pt, so a corrupt or missing checkpoint.pt
falls back to it. At start, under the StateLock, `recover` removes temp files of interrupted
writes, restores the newest good checkpoint and makes metrics.jsonl agree with it: after a
crash at any point the two are consistent.

Files are read back with torch.load(weights_only=True), which refuses arbitrary objects. A
failed write raises StateWriteError naming the file and the error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from p2pfl.atomic import fsync_dir, open_atomic, os_error_text, remove_stale_temps, temp_path
from p2pfl.errors import StateWriteError, UserError
from p2pfl.learning.params import fingerprint

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"  # the checkpoint before the current one
SET_ASIDE = "checkpoint.bad.pt"  # a corrupt checkpoint.pt, moved here by `recover`
METRICS = "metrics.jsonl"
REQUIRED = ("round", "fingerprint", "model", "optimizer", "torch_rng")
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}

Row = dict[str, object]


@dataclass(frozen=True)
class Restored:
    """What `load`/`recover` found: the round to start at (0 and path None: a fresh start),
    the metrics row stored in the checkpoint, warnings to log (one line each) and the repairs
    `recover` made (short phrases for one log line)."""

    round: int
    path: Path | None
    metrics_row: Row | None = None
    warnings: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    preprocessing: Row | None = None  # the statistics the run standardises with (JSON-able)


class _Bad(Exception):
    """A checkpoint file that cannot be used (unreadable or corrupt); the reason is the text."""


# -- writing --------------------------------------------------------------------------------


def save(state_dir: Path, round: int, model: nn.Module, optimizer: torch.optim.Optimizer,
         metrics_row: Mapping[str, object] | None = None,
         preprocessing: Mapping[str, object] | None = None) -> None:
    """Write the start of round `round` with the metrics row of the round it ends (None for 0)
    and the statistics the run standardises with (`preprocessing`, JSON-able).

    Order: temp file (fsync), current -> checkpoint.prev.pt, temp -> current, fsync the folder.
    On an OSError the current checkpoint is left as it was and StateWriteError is raised.
    Append the row to metrics.jsonl after this (rows of skipped rounds before it).
    """
    state = {
        "round": round,
        "fingerprint": fingerprint(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.random.get_rng_state(),
        "metrics_row": json.loads(json.dumps(metrics_row)),  # plain JSON types only
        "preprocessing": json.loads(json.dumps(preprocessing)),
    }
    state["digest"] = digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    path = state_dir / CHECKPOINT
    try:
        with open_atomic(path, text=False, perms=0o600,
                         before_replace=lambda: _keep_previous(path, state_dir / PREVIOUS)) as fh:
            fh.write(buf.getbuffer())
    except OSError as exc:
        raise StateWriteError(_write_error(path, "cannot write the checkpoint", exc)) from None


def _keep_previous(current: Path, previous: Path) -> None:
    """Make `previous` the current checkpoint's file, keeping `current` in place (a hard link),
    or, where the file system has no hard links, by renaming it."""
    if not current.exists():
        return
    link = temp_path(previous)
    try:
        os.link(current, link)
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise
        os.replace(current, previous)  # load uses `previous` until the new one is in place
        return
    try:
        os.replace(link, previous)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)


def append_metrics(state_dir: Path, row: Mapping[str, object]) -> None:
    """Append one JSON line to metrics.jsonl (on a new line after a torn one) and fsync it."""
    path = state_dir / METRICS
    try:
        _append_line(path, (json.dumps(row) + "\n").encode())
    except OSError as exc:
        raise StateWriteError(_write_error(path, "cannot append the metrics row", exc)) from None


def _append_line(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # the last line is torn: keep this row off it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, what: str, exc: OSError) -> str:
    return f"{path}: {what}: {os_error_text(exc)}"


# -- digest ---------------------------------------------------------------------------------


def digest(state: Mapping[str, object]) -> str:
    """Hex SHA-256 over a canonical walk of `state` without its "digest" entry: keys sorted,
    every tensor's dtype, shape and bytes, every scalar with its type."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def _feed(h, value: object) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        _frame(h, b"T", f"{flat.dtype}{tuple(value.shape)}".encode())
        _frame(h, b"B", flat.view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, str(kv[0])))
        h.update(b"D%d;" % len(items))
        for k, v in items:
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, list | tuple):
        h.update(b"L%d;" % len(value))
        for v in value:
            _feed(h, v)
    elif isinstance(value, float):
        _frame(h, b"S", f"float:{value.hex()}".encode())
    elif value is None or isinstance(value, bool | int | str):
        _frame(h, b"S", f"{type(value).__name__}:{value!r}".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def _frame(h, tag: bytes, data) -> None:
    """Tag and length before the bytes, so no two walks feed the same stream."""
    h.update(tag + b"%d;" % memoryview(data).nbytes)
    h.update(data)


# -- reading --------------------------------------------------------------------------------


def load(state_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> Restored:
    """Restore model, optimizer and RNG from the newest good checkpoint (changes no file).

    A corrupt or missing checkpoint.pt falls back to checkpoint.prev.pt with a warning. No good
    checkpoint but a file: UserError naming it. Another architecture: UserError.
    """
    path, state, warnings = _choose(state_dir, fingerprint(model))
    if path is None:
        return Restored(0, None)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.random.set_rng_state(state["torch_rng"])
    except Exception as exc:  # noqa: BLE001 - a checkpoint that does not fit: one clear error
        raise UserError(f"{path}: the checkpoint does not fit this node's model or optimizer "
                        f"({_first_line(exc)}); move it away to start fresh") from None
    row, prep = state.get("metrics_row"), state.get("preprocessing")
    return Restored(int(state["round"]), path, row if isinstance(row, dict) else None, warnings,
                    preprocessing=prep if isinstance(prep, dict) else None)


def _choose(state_dir: Path, fp: str) -> tuple[Path | None, dict, list[str]]:
    """The newest good checkpoint: (path, state, warnings), or (None, {}, []) if none exists."""
    current, previous = state_dir / CHECKPOINT, state_dir / PREVIOUS
    problems = []
    for path in (current, previous):
        if not path.exists():
            continue
        try:
            state, warnings = _read(path, fp)
        except _Bad as bad:
            problems.append(f"{path}: {bad}")
            continue
        if path == previous:
            why = problems[0] if problems else f"{current} is missing (a save was interrupted)"
            warnings.insert(0, f"{why}; using {previous} (round {state['round']})")
        return path, state, warnings
    if problems:
        raise UserError("; ".join(problems) + "; no good checkpoint is left: move the file(s) away "
                        "to start fresh from round 0")
    return None, {}, []


def _read(path: Path, fp: str) -> tuple[dict, list[str]]:
    """Read and verify one checkpoint file; _Bad if unusable, UserError if another model."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad checkpoint
        raise _Bad(f"cannot read the checkpoint ({_first_line(exc)})") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise _Bad("not a p2pfl checkpoint")
    warnings = []
    if "digest" not in state:
        warnings.append(f"{path} has no digest (written by an older p2pfl); it is not verified")
    elif state["digest"] != _safe_digest(state):
        raise _Bad("the checkpoint is corrupt (its digest does not match its content)")
    if not isinstance(state["round"], int) or state["round"] < 0:
        raise _Bad(f"the checkpoint has an invalid round {state['round']!r}")
    if state["fingerprint"] != fp:
        raise UserError(f"{path}: the checkpoint is of another model architecture; "
                        "move it away to start fresh")
    return state, warnings


def _safe_digest(state: dict) -> str | None:
    try:
        return digest(state)
    except (TypeError, RuntimeError):  # a value no checkpoint holds: corrupt
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


# -- recovery at start ----------------------------------------------------------------------


def recover(state_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> Restored:
    """Start-up (holding the StateLock): remove temp files of interrupted writes, `load`, set a
    corrupt checkpoint.pt aside as checkpoint.bad.pt when checkpoint.prev.pt was used, and make
    metrics.jsonl agree with the checkpoint (see `repair_metrics`).

    Raises UserError (no good checkpoint, another model) or StateWriteError (a repair failed).
    """
    repairs = []
    try:
        removed = remove_stale_temps(state_dir)
    except OSError as exc:
        raise StateWriteError(_write_error(state_dir, "cannot remove temp files", exc)) from None
    if removed:
        repairs.append(f"removed {len(removed)} temp file(s) of interrupted writes")
    restored = load(state_dir, model, optimizer)
    current = state_dir / CHECKPOINT
    if restored.path == state_dir / PREVIOUS and current.exists():
        _set_aside(current, state_dir / SET_ASIDE)
        repairs.append(f"moved the corrupt {CHECKPOINT} to {SET_ASIDE}")
    repairs += repair_metrics(state_dir, restored.round, restored.metrics_row)
    return dataclasses.replace(restored, repairs=repairs)


def _set_aside(current: Path, aside: Path) -> None:
    """Keep a corrupt checkpoint for inspection, out of the way: the next save must not make
    it checkpoint.prev.pt in place of the good one."""
    try:
        os.replace(current, aside)
        fsync_dir(current.parent)
    except OSError as exc:
        raise StateWriteError(_write_error(current, "cannot move the corrupt checkpoint", exc)) from None


def repair_metrics(state_dir: Path, round: int, row: Mapping[str, object] | None) -> list[str]:
    """Make metrics.jsonl agree with a checkpoint of `round` that stores `row`: drop torn and
    non-JSON lines, drop rows of rounds >= `round` (they are redone), append `row` if its round
    is missing. Rewritten atomically, only if something changed; returns what was done."""
    path = state_dir / METRICS
    try:
        # only a regular file: a symlink to a device (say /dev/full) would read forever
        lines = path.read_bytes().split(b"\n") if path.is_file() else []
        kept, torn, dropped = _sort_lines(lines, round)
        have = {_row(line)["round"] for line in kept}
        added = row is not None and 0 <= _round_of(row) < round and row["round"] not in have
        if not (torn or dropped or added):
            return []
        text = b"".join(line + b"\n" for line in kept)
        if added:
            text += (json.dumps(row) + "\n").encode()
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        with open_atomic(path, text=False, perms=mode) as fh:
            fh.write(text)
    except OSError as exc:
        raise StateWriteError(_write_error(path, "cannot repair the metrics", exc)) from None
    return _describe(torn, dropped, round, _round_of(row) if added else None)


def _sort_lines(lines: list[bytes], round: int) -> tuple[list[bytes], int, int]:
    """(lines to keep, torn or non-JSON lines, rows of rounds >= `round`); blank lines vanish."""
    kept, torn, dropped = [], 0, 0
    for line in lines:
        if not line.strip():
            continue
        row = _row(line)
        if row is None:
            torn += 1
        elif row["round"] >= round:
            dropped += 1
        else:
            kept.append(line)
    return kept, torn, dropped


def _row(line: bytes) -> Row | None:
    """The row a metrics line holds, or None if it is torn or has no integer round."""
    try:
        row = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return row if isinstance(row, dict) and _round_of(row) >= 0 else None


def _round_of(row: Mapping[str, object]) -> int:
    r = row.get("round")
    return r if isinstance(r, int) and not isinstance(r, bool) else -1


def _describe(torn: int, dropped: int, round: int, added: int | None) -> list[str]:
    done = []
    if torn:
        done.append(f"{METRICS}: skipped {torn} torn line(s)")
    if dropped:
        done.append(f"{METRICS}: dropped {dropped} row(s) of rounds >= {round} (redone)")
    if added is not None:
        done.append(f"{METRICS}: appended the row of round {added} from the checkpoint")
    return done


def read_metrics(state_dir: Path) -> list[Row]:
    """All complete rows of metrics.jsonl (torn and non-JSON lines are skipped)."""
    path = state_dir / METRICS
    if not path.is_file():
        return []
    return [row for line in path.read_bytes().split(b"\n") if line.strip() and (row := _row(line))]
