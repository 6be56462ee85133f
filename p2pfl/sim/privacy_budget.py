"""Per-node privacy accounting of a simulated DP-SGD run (Renyi accountant, learning/privacy.py).

Node k takes a DP-SGD step with batches of B of its n_k rows: sampling rate q_k = min(1, B / n_k).
The accountant assumes Poisson sampling at that rate; the simulator's fixed-size shuffled
batches are the usual approximation of it (see the privacy module's docstring). Epsilon is
reported at the run's delta, as the maximum over nodes (the least-protected hospital).
"""

from __future__ import annotations

import numpy as np

from p2pfl.learning.batches import Step
from p2pfl.learning.privacy import epsilon
from p2pfl.sim.options import DpSettings


class PrivacyBudget:
    """DP-SGD steps taken by each node, and the epsilon they spend."""

    def __init__(self, dp: DpSettings, sizes: np.ndarray, batch_size: int):
        self.dp = dp
        self.rates = np.minimum(1.0, batch_size / np.maximum(np.asarray(sizes, dtype=np.float64), 1.0))
        self.steps = np.zeros(len(sizes), dtype=np.int64)
        self._cache: dict[tuple[float, int], float] = {}

    def add(self, steps: list[Step]) -> None:
        """Count the steps of one round (a node takes a step when it has a valid row in it)."""
        for step in steps:
            self.steps += step.active()

    def per_node(self) -> np.ndarray:
        """Epsilon of each node so far at the run's delta: [N]."""
        out = np.zeros(len(self.steps))
        for k, (q, t) in enumerate(zip(self.rates, self.steps, strict=True)):
            key = (float(q), int(t))
            if key not in self._cache:
                self._cache[key] = epsilon(self.dp.noise, float(q), int(t), self.dp.delta)
            out[k] = self._cache[key]
        return out

    def epsilon(self) -> float:
        """The largest epsilon over nodes."""
        return float(self.per_node().max()) if len(self.steps) else 0.0
