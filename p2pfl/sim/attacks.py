"""Byzantine members of a simulated consortium and the models they send.

The malicious nodes are round(fraction x N) nodes drawn by the run's seed. They train and
aggregate like everyone else (so they hold a plausible model); what differs is what they send,
the same message to every neighbour each round:

- sign_flip: the negated model, -x_i (the model-space form of the sign-flipping attack, which
  sends the negated gradient in server-based training).
- gaussian: Gaussian noise N(0, s^2) per coordinate, s the root-mean-square value of the honest
  models' coordinates (noise of the model's scale).
- label_flip: sends honestly, but trains on flipped labels y -> C - 1 - y.
- alie: "a little is enough" (Baruch, Baruch and Goldberg, NeurIPS 2019): mean - z * std of the
  honest models per coordinate, with the paper's z_max = Phi^-1((n - s) / n),
  s = floor(n / 2 + 1) - f for n nodes of which f are malicious (z at least 0.1).

Metrics of an attacked run are over the honest nodes only.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch

from p2pfl.sim.data import NodeData
from p2pfl.sim.options import Attack


def byzantine_nodes(n: int, fraction: float, seed: int) -> np.ndarray:
    """[N] bool: the malicious nodes, round(fraction * n) of them, chosen by the seed."""
    count = min(n - 1, int(round(fraction * n))) if n > 1 else 0
    bad = np.zeros(n, dtype=bool)
    bad[np.random.default_rng([seed, 0xBAD]).choice(n, count, replace=False)] = True
    return bad


def alie_z(n: int, f: int) -> float:
    """z_max of Baruch et al. 2019 for n nodes with f malicious ones."""
    s = math.floor(n / 2 + 1) - f
    return max(0.1, NormalDist().inv_cdf(min(max((n - s) / n, 1e-6), 1 - 1e-6)))


def flip_labels(data: NodeData, bad: np.ndarray) -> NodeData:
    """A copy of `data` where the malicious nodes' training labels are y -> C - 1 - y."""
    y = data.y.clone()
    for k in np.flatnonzero(bad):
        a = int(data.offsets[k])
        y[a : a + int(data.sizes[k])] = data.n_classes - 1 - y[a : a + int(data.sizes[k])]
    return NodeData(data.x, y, data.offsets, data.sizes, data.x_test, data.y_test, data.n_classes)


def attacked_messages(
    attack: Attack, x: torch.Tensor, bad: np.ndarray, generator: torch.Generator
) -> torch.Tensor:
    """What every node sends this round [N, P]: x, with the malicious rows replaced."""
    if attack.name == "label_flip" or not bad.any():
        return x
    sent = x.clone()
    rows = torch.from_numpy(np.flatnonzero(bad))
    honest = x[torch.from_numpy(np.flatnonzero(~bad))]
    if attack.name == "sign_flip":
        sent[rows] = -x[rows]
    elif attack.name == "gaussian":
        scale = float(honest.double().pow(2).mean().sqrt())
        sent[rows] = scale * torch.randn((len(rows), x.shape[1]), generator=generator, dtype=x.dtype)
    elif attack.name == "alie":
        z = alie_z(len(bad), int(bad.sum()))
        std = honest.std(dim=0, unbiased=len(honest) > 1)
        sent[rows] = (honest.mean(dim=0) - z * std)[None].expand(len(rows), -1)
    else:
        raise ValueError(f"unknown attack {attack.name!r}")
    return sent
