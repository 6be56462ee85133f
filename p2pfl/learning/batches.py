"""Mini-batch plans shared by every engine, so the same seed gives the same batches everywhere.

One generator per round (seeded by (seed, round)) draws the batches of all nodes at once, so a
plan can be recomputed for any round (a restarted node resumes exactly) and node i's batches do
not depend on which engine asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Step:
    """One local step for all nodes: local row indices [N, B] and which entries are real."""

    index: np.ndarray
    valid: np.ndarray | None = None  # None: every entry is valid

    def active(self) -> np.ndarray:
        """Nodes that take this step (those with at least one valid row)."""
        if self.valid is None:
            return np.ones(self.index.shape[0], dtype=bool)
        return self.valid.any(axis=1)


@dataclass(frozen=True)
class BatchPlan:
    """Local steps (sampled with replacement) or local epochs (shuffled passes) per round."""

    sizes: np.ndarray
    batch_size: int
    local_steps: int | None = None
    local_epochs: int | None = None
    seed: int = 0

    def round(self, t: int) -> list[Step]:
        """The steps of round t."""
        rng = np.random.default_rng([self.seed, t, 0xBA7C])
        sizes = np.asarray(self.sizes, dtype=np.int64)
        n, b = len(sizes), self.batch_size
        if self.local_epochs is None:
            draws = rng.random((int(self.local_steps or 1), n, b))
            idx = np.minimum((draws * sizes[None, :, None]).astype(np.int64), sizes[None, :, None] - 1)
            return [Step(i) for i in idx]
        steps: list[Step] = []
        width = int(sizes.max())
        count = -(-width // b)
        cols = np.arange(count * b)
        for _ in range(self.local_epochs):
            keys = rng.random((n, width))
            keys[cols[None, :width] >= sizes[:, None]] = np.inf
            perm = np.argsort(keys, axis=1)
            valid = cols[None, :] < sizes[:, None]  # every step of the epoch at once
            index = np.zeros((n, count * b), dtype=perm.dtype)  # the last step padded with row 0
            index[:, :width] = perm
            index[~valid] = 0
            steps += [Step(index[:, s * b : (s + 1) * b], valid[:, s * b : (s + 1) * b])
                      for s in range(count)]
        return steps

    def steps_per_round(self) -> int:
        """Number of steps in a round (the longest node's, with local epochs)."""
        if self.local_epochs is None:
            return int(self.local_steps or 1)
        return self.local_epochs * -(-int(np.max(self.sizes)) // self.batch_size)
