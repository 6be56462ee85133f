"""Gossip averaging alone (no gradients): how many rounds a topology needs to agree.

Every node starts from its own random vector; each round x <- W(t) x. The consensus error is
||X - mean(X)|| (Frobenius, over nodes and coordinates). Spectral-gap theory predicts that it
shrinks by (1 - gap) per round asymptotically, so by `factor` after about ln(factor) / gap
rounds (Xiao and Boyd 2004; for random or time-varying W, the expected rate of
`p2pfl.gossip.spectral.rate_gap`).
"""

from __future__ import annotations

import math

import numpy as np

from p2pfl.errors import UserError
from p2pfl.gossip.mixing import predicted_rounds
from p2pfl.gossip.topology import build_topology
from p2pfl.settings.sim import SimConfig

DIM = 8  # coordinates per node; the error is measured over all of them


def consensus_error(x: np.ndarray) -> float:
    """||X - mean over nodes||, Frobenius norm."""
    return float(np.linalg.norm(x - x.mean(axis=0, keepdims=True)))


def measure_rounds(cfg: SimConfig, factor: float = 1000.0) -> dict[str, float]:
    """Spectral gap, predicted and measured rounds to shrink the consensus error `factor` times.

    Uses cfg's nodes, topology, param, mixing and seed; cfg.rounds caps the rounds (measured is
    inf when the cap is reached first).
    """
    topo = build_topology(cfg.topology, cfg.nodes, cfg.param, seed=cfg.seed, scheme=cfg.mixing)
    if not cfg.allow_disconnected and not topo.is_connected():
        raise UserError(f"topology {cfg.topology} with {cfg.nodes} nodes is disconnected")
    gap = topo.spectral_gap()
    rng = np.random.default_rng([cfg.seed, 0xC025])
    x = rng.standard_normal((cfg.nodes, DIM))
    goal = consensus_error(x) / factor
    measured = math.inf
    for t in range(cfg.rounds):
        x = topo.mixing(t) @ x
        if consensus_error(x) <= goal:
            measured = float(t + 1)
            break
    predicted = predicted_rounds(gap, factor)
    return {
        "spectral_gap": gap,
        "predicted_rounds": predicted,
        "measured_rounds": measured,
        "measured_over_predicted": measured / predicted if math.isfinite(predicted) else math.nan,
    }
