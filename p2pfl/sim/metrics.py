"""Metrics over stacked node parameters: per-node and averaged-model accuracy, consensus."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from p2pfl.learning.params import param_specs, unflatten


@torch.no_grad()
def node_accuracies(
    model: nn.Module, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, chunk: int = 0
) -> torch.Tensor:
    """Test accuracy of each node's parameters ([N, P]) on the shared test set: [N]."""
    specs = param_specs(model)
    n = flat.shape[0]
    # Bound the [chunk, rows, classes] logits to roughly 32 M floats.
    chunk = chunk or max(1, min(n, 32_000_000 // max(1, len(y) * 64)))

    def forward(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, params, (x,))

    out = []
    for a in range(0, n, chunk):
        logits = vmap(forward)(unflatten(flat[a : a + chunk], specs))
        out.append((logits.argmax(dim=-1) == y).float().mean(dim=1))
    return torch.cat(out)


def consensus_distance(flat: torch.Tensor) -> float:
    """(1/n) sum_i ||x_i - mean||^2."""
    centered = flat.double() - flat.double().mean(dim=0, keepdim=True)
    return float(centered.pow(2).sum(dim=1).mean())
