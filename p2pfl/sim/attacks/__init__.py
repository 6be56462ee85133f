"""Byzantine members of a simulated consortium, one module per attack, each defining `COMPONENT`.

The malicious nodes are round(fraction x N) nodes drawn by the run's seed (`--attack
NAME:FRACTION`). They train and aggregate like everyone else (so they hold a plausible model);
an attack changes either what they send, the same message to every neighbour each round
(`_kind.MessageAttack`), or the data they train on (`_kind.DataAttack`). Adding an attack is
adding one module here. Metrics of an attacked run are over the honest nodes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from p2pfl.errors import UserError
from p2pfl.registry import Registry
from p2pfl.sim.attacks._kind import Kind
from p2pfl.sim.attacks.label_flip import flip_labels
from p2pfl.sim.data import NodeData

if TYPE_CHECKING:
    from p2pfl.sim.options import Attack

ATTACKS: Registry[Kind] = Registry("attack", __name__, UserError)

__all__ = ["ATTACKS", "attacked_messages", "byzantine_nodes", "flip_labels", "poisoned_data"]


def byzantine_nodes(n: int, fraction: float, seed: int) -> np.ndarray:
    """[N] bool: the malicious nodes, round(fraction * n) of them, chosen by the seed."""
    count = min(n - 1, int(round(fraction * n))) if n > 1 else 0
    bad = np.zeros(n, dtype=bool)
    bad[np.random.default_rng([seed, 0xBAD]).choice(n, count, replace=False)] = True
    return bad


def poisoned_data(attack: Attack, data: NodeData, bad: np.ndarray) -> NodeData:
    """The data every node trains on: `data`, unless the attack corrupts the malicious nodes' rows."""
    kind = ATTACKS.get(attack.name)
    return data if kind.on_messages else kind.poison(data, bad)


def attacked_messages(
    attack: Attack, x: torch.Tensor, bad: np.ndarray, generator: torch.Generator
) -> torch.Tensor:
    """What every node sends this round [N, P]: x, with the malicious rows replaced."""
    kind = ATTACKS.get(attack.name)
    if not kind.on_messages or not bad.any():
        return x
    sent = x.clone()
    rows = torch.from_numpy(np.flatnonzero(bad))
    honest = x[torch.from_numpy(np.flatnonzero(~bad))]
    sent[rows] = kind.forge(x[rows], honest, generator)
    return sent
