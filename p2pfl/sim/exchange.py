"""One round of communication when it is more than the plain W-mix: what is sent, what arrives,
how it is combined, and how many bytes went on the wire.

Order within a round: the senders' messages (attacks replace the malicious rows), compression
(direct int8 / float16: the receivers decode Q(x_j); top-k: CHOCO-Gossip on public copies),
the faults of the round (only what arrived is combined, with the weights re-normalised over it,
self included), then the aggregator (mean: the weighted average; trimmed mean, median, clipping:
robust_mix over the same neighbourhoods; a node that heard too few models for the trim keeps its
own). Bytes are `encoded_bytes` of the compressor per message actually sent (to an online peer;
a message that is then lost or late still used the sender's uplink).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from p2pfl.gossip.compression import ChocoStack, compress, encoded_bytes
from p2pfl.gossip.mixing import to_torch
from p2pfl.gossip.robust import BLOCK_BYTES, Neighbourhoods, aggregate_stacked, neighbourhoods
from p2pfl.sim.attacks import attacked_messages
from p2pfl.sim.faults import FaultModel, RoundFaults, renormalised
from p2pfl.sim.options import Robustness


class Exchange:
    """Communication state of one run: CHOCO public copies, fault and attack generators."""

    def __init__(self, opts: Robustness, x0: torch.Tensor, bad: np.ndarray, seed: int):
        self.opts = opts
        self.bad = bad
        self.message_bytes = encoded_bytes(opts.compression, x0.shape[1])
        self.choco = ChocoStack(opts.compression, x0) if opts.compression.choco else None
        self.faults = (FaultModel(seed, opts.dropout, opts.stragglers, opts.message_loss)
                       if opts.faulty else None)
        self.generator = torch.Generator().manual_seed(seed * 7919 + 0xC0DE)
        self._table: tuple[sp.csr_matrix, Neighbourhoods] | None = None

    def draw_faults(self, n: int) -> RoundFaults | None:
        """The node failures of the next round (None when the run has no fault model)."""
        return None if self.faults is None else self.faults.draw(n)

    @torch.no_grad()
    def step(
        self, x: torch.Tensor, w: sp.csr_matrix, faults: RoundFaults | None
    ) -> tuple[torch.Tensor, float]:
        """New models [N, P] after this round's communication, and the mean bytes sent per node."""
        n = x.shape[0]
        if faults is None or self.faults is None:
            m, messages = w, w.nnz - int(np.count_nonzero(w.diagonal()))
            online = None
        else:
            sent, arrived = self.faults.delivered(w, faults)
            m, messages, online = renormalised(w, arrived), sent.nnz, faults.online
        sent_models = x if self.opts.attack is None else attacked_messages(self.opts.attack, x, self.bad,
                                                                            self.generator)
        bytes_per_node = messages * self.message_bytes / n
        if self.choco is not None:
            return self._choco(x, sent_models, m, online), bytes_per_node
        received = sent_models
        if self.opts.compression.name != "none":
            received = compress(self.opts.compression, sent_models, self.generator)
        if self.opts.aggregator.name == "mean":
            diag = torch.from_numpy(sp.csr_matrix(m).diagonal()).to(x.dtype)[:, None]
            return torch.sparse.mm(to_torch(m, x.dtype), received) + diag * (x - received), bytes_per_node
        return self._robust(x, received, m), bytes_per_node

    def _choco(
        self, x: torch.Tensor, sent: torch.Tensor, m: sp.csr_matrix, online: np.ndarray | None
    ) -> torch.Tensor:
        """CHOCO-Gossip: online nodes publish q = Q(sent - x_hat); then x += gamma (M x_hat - x_hat)."""
        assert self.choco is not None
        q = compress(self.opts.compression, sent - self.choco.x_hat, self.generator)
        if online is not None:
            q[torch.from_numpy(~online)] = 0.0
        self.choco.x_hat += q
        return self.choco.gossip(x, m)

    def _robust(self, x: torch.Tensor, received: torch.Tensor, m: sp.csr_matrix) -> torch.Tensor:
        """Robust aggregation of every node that heard enough models; the others keep their own."""
        table = self._neighbourhoods(m)
        agg = self.opts.aggregator
        rows = torch.nonzero(table.counts() >= agg.min_models()).flatten()
        out = x.clone()
        width, p = table.index.shape[1], x.shape[1]
        block = max(1, BLOCK_BYTES // max(1, width * p * x.element_size()))
        for a in range(0, len(rows), block):
            r = rows[a : a + block]
            stack = received[table.index[r]]
            stack[:, 0] = x[r]
            out[r] = aggregate_stacked(stack, agg, table.weight[r], table.mask[r], node=int(r[0]))
        return out

    def _neighbourhoods(self, m: sp.csr_matrix) -> Neighbourhoods:
        if self._table is None or self._table[0] is not m:
            self._table = (m, neighbourhoods(m))
        return self._table[1]
