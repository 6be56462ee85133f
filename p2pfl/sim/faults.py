"""Failures of one simulated round, drawn from a seeded generator, and what then arrives.

- dropout p: each node is offline for the round with probability p: it does not train, send or
  receive (it keeps its model for the next round).
- stragglers p: each online node is late with probability p: it trains, but its update misses
  the deadline, so its neighbours aggregate without it (it still receives and aggregates).
- message loss p: each directed message between online nodes is lost with probability p.

A receiver combines what arrived, self included, with its mixing weights re-normalised over
those models, as the daemon's round state machine does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from p2pfl.gossip.mixing import renormalised_rows


@dataclass(frozen=True)
class RoundFaults:
    """Who is online and who is late in one round ([N] bool each)."""

    online: np.ndarray
    late: np.ndarray


class FaultModel:
    """Seeded per-round draws of dropout, stragglers and message loss."""

    def __init__(self, seed: int, dropout: float = 0.0, stragglers: float = 0.0, message_loss: float = 0.0):
        self.dropout = dropout
        self.stragglers = stragglers
        self.message_loss = message_loss
        self.rng = np.random.default_rng([seed, 0xFA17])

    def draw(self, n: int) -> RoundFaults:
        """The node failures of the next round (draw once per round, in round order)."""
        online = self.rng.random(n) >= self.dropout
        late = (self.rng.random(n) < self.stragglers) & online
        return RoundFaults(online, late)

    def delivered(self, w: sp.csr_matrix, faults: RoundFaults) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(sent, arrived): the off-diagonal entries of W whose message was sent / arrived in time.

        Row i, column j is the message from j to i. A message is sent when both ends are online
        (a node does not reach an offline peer) and arrives unless the sender is late or the
        message is lost.
        """
        c = sp.csr_matrix(w, dtype=np.float64)
        rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
        cols = c.indices
        off = rows != cols
        sent = off & faults.online[rows] & faults.online[cols]
        lost = self.rng.random(len(rows)) < self.message_loss
        arrived = sent & ~faults.late[cols] & ~lost
        return _keep(c, rows, cols, sent), _keep(c, rows, cols, arrived)


def renormalised(w: sp.csr_matrix, arrived: sp.csr_matrix) -> sp.csr_matrix:
    """The mixing matrix of what arrived: W's diagonal plus the arrived entries, rows re-normalised
    by `mixing.renormalisation` (a node with no weight that heard nothing keeps its own model)."""
    c = sp.csr_matrix(w, dtype=np.float64)
    return renormalised_rows(sp.diags(c.diagonal()) + arrived)


def _keep(c: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, keep: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((c.data[keep], (rows[keep], cols[keep])), shape=c.shape)
