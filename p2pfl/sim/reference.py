"""Reference engine: a plain loop over N separate torch models.

This is the readable definition of decentralized SGD (D-PSGD, Lian et al., NeurIPS 2017): each
round every node takes its local optimizer steps, then replaces its parameters by the
W-weighted average of its own and its in-neighbours' parameters. Optimizer state (momentum,
Adam moments) and buffers (e.g. BatchNorm running statistics) stay local and are not mixed.
It runs any nn.Module, also those the vectorized engine cannot vmap.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from p2pfl.learning.batches import Step
from p2pfl.learning.params import flatten, load_flat
from p2pfl.learning.privacy import dp_train_steps
from p2pfl.learning.trainer import OptimConfig, make_optimizer, train_steps
from p2pfl.sim.data import NodeData
from p2pfl.sim.options import DpSettings


class ReferenceEngine:
    """N torch modules with N torch.optim optimizers."""

    def __init__(self, model: nn.Module, data: NodeData, opt: OptimConfig, init: torch.Tensor,
                 dp: DpSettings | None = None, seed: int = 0):
        self.data = data
        self.dp = dp
        self.generator = torch.Generator().manual_seed(seed * 7919 + 0xD9)
        self.models = []
        self.optimizers = []
        for _ in range(data.nodes):
            m = copy.deepcopy(model)
            load_flat(m, init)
            self.models.append(m)
            self.optimizers.append(make_optimizer(m, opt))

    def local_round(self, steps: list[Step]) -> np.ndarray:
        """Local training of every node; returns each node's mean loss over its steps."""
        return np.array([self.train_node(k, steps) for k in range(self.data.nodes)])

    def train_node(self, k: int, steps: list[Step]) -> float:
        """Node k's part of the steps (its rows of each); returns its mean loss (nan if none)."""
        x, y = self.data.node(k)
        batches = []
        for step in steps:
            rows = step.index[k] if step.valid is None else step.index[k][step.valid[k]]
            if len(rows):
                batches.append(rows)
        model, optimizer = self.models[k], self.optimizers[k]
        if self.dp is None:
            return train_steps(model, optimizer, x, y, batches)
        return dp_train_steps(model, optimizer, x, y, batches, self.dp.clip, self.dp.noise, self.generator)

    def mix(self, w: sp.csr_matrix) -> None:
        """x_i <- sum_j W_ij x_j for every node i, one node at a time."""
        old = [flatten(m) for m in self.models]
        for i, model in enumerate(self.models):
            lo, hi = w.indptr[i], w.indptr[i + 1]
            new = torch.zeros_like(old[i])
            for j, wij in zip(w.indices[lo:hi], w.data[lo:hi], strict=True):
                new += float(wij) * old[j]
            load_flat(model, new)

    def params(self) -> torch.Tensor:
        """Parameters of all nodes as an [N, P] tensor."""
        return torch.stack([flatten(m) for m in self.models])

    def buffers(self) -> dict[str, torch.Tensor]:
        """Buffers of all nodes, name -> [N, *shape] (empty for a model without buffers)."""
        per_node = [dict(m.named_buffers()) for m in self.models]
        return {k: torch.stack([b[k].detach() for b in per_node]) for k in per_node[0]}

    def set_params(self, flat: torch.Tensor) -> None:
        """Replace the parameters of all nodes ([N, P]); optimizer state stays."""
        for model, row in zip(self.models, flat, strict=True):
            load_flat(model, row)
