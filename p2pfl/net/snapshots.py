"""Each round's model while a plan selects the best round (training.select): `rounds/N.pt` in the
state folder, written atomically; when training ends the chosen one becomes `best.pt` and the
others are removed. Our own files, read with `torch.load(weights_only=True)`: no pickle of
anything but tensors and plain values.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from p2pfl.atomic import open_atomic
from p2pfl.net.checkpoint import digest

ROUNDS = "rounds"
BEST = "best.pt"


def path_of(state_dir: Path, round: int) -> Path:
    return state_dir / ROUNDS / f"{round}.pt"


def save(state_dir: Path, round: int, model: nn.Module, preprocessing: Mapping[str, object],
         metrics_row: Mapping[str, object]) -> None:
    """The model after round `round` (0-based index of the round that ended), with its metrics
    row and a digest (p2pfl.net.checkpoint.digest) verified when it is read."""
    (state_dir / ROUNDS).mkdir(exist_ok=True)
    # "round" as in checkpoint.pt: the rounds done (the round to start at), one past `round`
    state = {"round": round + 1, "model": model.state_dict(), "preprocessing": dict(preprocessing),
             "metrics_row": json.loads(json.dumps(metrics_row))}
    state["digest"] = digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    with open_atomic(path_of(state_dir, round), text=False, perms=0o600) as fh:
        fh.write(buf.getbuffer())


def keep_best(state_dir: Path, round: int) -> int:
    """Make the snapshot of `round` (or, if a catch-up skipped it, of the next round kept)
    `best.pt`, remove the rest; the round kept."""
    kept = sorted(int(p.stem) for p in (state_dir / ROUNDS).glob("*.pt") if p.stem.isdigit())
    chosen = next((r for r in kept if r >= round), kept[-1] if kept else None)
    if chosen is None:
        raise OSError(f"{state_dir / ROUNDS}: no snapshot of any round to keep")
    data = path_of(state_dir, chosen).read_bytes()
    with open_atomic(state_dir / BEST, text=False, perms=0o600) as fh:
        fh.write(data)
    shutil.rmtree(state_dir / ROUNDS)
    return chosen
