"""Asynchronous gossip's mixing rule (`gossip.mode = "async"`): no round barrier.

A node trains at its own pace; after each of its local rounds k_i it sends its model to its
out-neighbours and mixes its fresh model with the latest model it holds from each in-neighbour
j, sent after j's local round k_j, without waiting for anyone. The communication pattern is
asynchronous decentralized SGD (AD-PSGD, Lian, Zhang, Zhang and Liu, ICML 2018) with the
wait-free neighbourhood averaging of SWIFT (Bornstein, Rabbani, Wang, Bedi and Huang, ICLR 2023).
A stale model is discounted by the polynomial staleness function of FedAsync (Xie, Koyejo and
Gupta 2019):

    age a_j = max(0, k_i - k_j)               local rounds node i is ahead of j's model
    s(a)    = (1 + a) ** -alpha                (alpha = gossip.staleness_alpha)
    raw_j   = W_ij * s(a_j), 0 if a_j > tau    (tau = gossip.max_staleness; W: the mixing weights)
    weights = raw / sum(raw), own model first  (own age 0, so its weight is W_ii before renormalising)

Pure: no clock, no I/O; the simulator calls `discounts` on arrays, the daemon `async_row`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def discounts(ages: np.ndarray, alpha: float, max_staleness: int) -> np.ndarray:
    """s(a) for each age (clipped at 0), and 0 beyond `max_staleness`."""
    a = np.maximum(np.asarray(ages, dtype=np.float64), 0.0)
    return np.where(a > max_staleness, 0.0, (1.0 + a) ** -alpha)


def async_row(own_weight: float, held: Sequence[tuple[float, int]], alpha: float,
              max_staleness: int) -> tuple[float, ...]:
    """The weights of one mix, own model first, then each held (mixing weight, age) in order;
    a model too stale gets 0. They sum to 1 (own alone: 1)."""
    if not held:
        return (1.0,)
    weights = np.array([w for w, _ in held], dtype=np.float64)
    raw = np.concatenate([[own_weight], weights * discounts(np.array([a for _, a in held]), alpha,
                                                             max_staleness)])
    total = raw.sum()
    if total <= 0:
        return (1.0,) + (0.0,) * len(held)
    return tuple(float(x) for x in raw / total)
