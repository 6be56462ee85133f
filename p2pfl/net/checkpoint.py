"""The node's state on disk: checkpoint.pt (atomic) and metrics.jsonl (append + fsync).

The checkpoint is a local file this node wrote itself; it is read back with
torch.load(weights_only=True), which refuses arbitrary objects.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch
from torch import nn

from p2pfl.atomic import write_atomic
from p2pfl.errors import UserError
from p2pfl.learning.params import fingerprint

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def save(state_dir: Path, round: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Write the start-of-round-`round` state atomically (temp file, fsync, rename)."""
    buf = io.BytesIO()
    torch.save({
        "round": round,
        "fingerprint": fingerprint(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.random.get_rng_state(),
    }, buf)
    write_atomic(state_dir / CHECKPOINT, buf.getvalue(), perms=0o600)


def load(state_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model, optimizer and RNG from the checkpoint; returns its round (0 if none)."""
    path = state_dir / CHECKPOINT
    if not path.exists():
        return 0
    try:
        state = torch.load(path, weights_only=True)
        if state["fingerprint"] != fingerprint(model):
            raise UserError(f"{path}: the checkpoint is of another model architecture; "
                            "move it away to start fresh")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.random.set_rng_state(state["torch_rng"])
        return int(state["round"])
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets one clear error
        raise UserError(f"{path}: cannot read the checkpoint ({exc}); move it away to start fresh") from None


def append_metrics(state_dir: Path, row: dict[str, object]) -> None:
    """Append one JSON line to metrics.jsonl and fsync it."""
    with (state_dir / METRICS).open("a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(state_dir: Path) -> list[dict[str, object]]:
    """All complete lines of metrics.jsonl (a torn last line is skipped)."""
    path = state_dir / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
