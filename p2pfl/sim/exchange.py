"""One round of communication when it is more than the plain W-mix: what is sent, what arrives,
how it is combined, and how many bytes went on the wire.

Order within a round: the senders' messages (attacks replace the malicious rows), compression
(direct int8 / float16: the receivers decode Q(x_j); top-k: CHOCO-Gossip on public copies),
the faults of the round (only what arrived is combined, with the weights re-normalised over it,
self included), then the aggregator (the plain mean: the W-mix of `mix_compressed`; a robust
rule: `robust_mix` over the same neighbourhoods, where a node that heard too few models for the
rule keeps its own). Bytes are `encoded_bytes` of the compressor per message actually sent (to
an online peer; a message that is then lost or late still used the sender's uplink).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from p2pfl.gossip.compression import ChocoStack, compress, encoded_bytes, mix_compressed
from p2pfl.gossip.robust import Neighbourhoods, neighbourhoods, robust_mix
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
            m, messages, online = renormalised(w, arrived), sent.nnz, torch.from_numpy(faults.online)
        sent_models = x if self.opts.attack is None else attacked_messages(self.opts.attack, x, self.bad,
                                                                            self.generator)
        bytes_per_node = messages * self.message_bytes / n
        comp, agg = self.opts.compression, self.opts.aggregator
        if self.choco is not None:  # online nodes publish Q(sent - x_hat); then the step on x_hat
            self.choco.exchange(sent_models, self.generator, online=online)
            return self.choco.gossip(x, m), bytes_per_node
        if agg.is_linear:
            return mix_compressed(x, m, comp, self.generator, sent=sent_models), bytes_per_node
        received = compress(comp, sent_models, self.generator)
        return robust_mix(x, self._neighbourhoods(m), agg, sent=received, keep_short=True), bytes_per_node

    def _neighbourhoods(self, m: sp.csr_matrix) -> Neighbourhoods:
        if self._table is None or self._table[0] is not m:
            self._table = (m, neighbourhoods(m))
        return self._table[1]
