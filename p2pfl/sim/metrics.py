"""Metrics over stacked node parameters: per-node and averaged-model accuracy, consensus."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from p2pfl.learning.params import param_specs, unflatten
from p2pfl.sim import blocks, stacked

Buffers = dict[str, torch.Tensor]  # name -> [N, *shape], one row per node


@torch.no_grad()
def node_accuracies(
    model: nn.Module, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
    buffers: Buffers | None = None, chunk: int = 0,
) -> torch.Tensor:
    """Test accuracy of each node's parameters ([N, P]) and buffers on the shared test set: [N].

    `buffers` holds each node's buffers stacked ([N, ...]); None means the template model's own.
    The model is evaluated in eval mode (BatchNorm uses its running statistics). A model that
    cannot run under vmap (the reference engine runs any module) is evaluated node by node.
    """
    specs = param_specs(model)
    n = flat.shape[0]
    layers = stacked.linear_layers(model)  # mlp, logreg: batched products, vmap's numbers
    # Bound the [chunk, rows, 64] activations: to 2 M floats (in cache) for batched products,
    # to 32 M under vmap (whose every call costs more than a cache miss).
    chunk = chunk or max(1, min(n, (2_000_000 if layers else 32_000_000) // max(1, len(y) * 64)))
    shared = buffers is None
    bufs = dict(model.named_buffers()) if shared else buffers

    def forward(params: dict[str, torch.Tensor], b: Buffers) -> torch.Tensor:
        return functional_call(model, (params, b), (x,))

    def block(a: int) -> torch.Tensor:
        params = unflatten(flat[a : a + chunk], specs)
        block = bufs if shared else {k: v[a : a + chunk] for k, v in bufs.items()}
        try:
            if layers is not None:
                logits = stacked.forward(layers, params, x, shared=True)
            else:
                logits = vmap(forward, in_dims=(0, None if shared else 0))(params, block)
        except RuntimeError:  # not vmappable: one node at a time
            logits = torch.stack([
                forward({k: v[i] for k, v in params.items()},
                        block if shared else {k: v[i] for k, v in block.items()})
                for i in range(len(flat[a : a + chunk]))])
        return (logits.argmax(dim=-1) == y).float().mean(dim=1)

    out = torch.empty(n)

    def into_out(a: int) -> None:  # on a worker: grad mode is per thread
        with torch.no_grad():
            out[a : a + chunk] = block(a)

    was_training = model.training
    model.eval()
    try:
        if layers is not None:  # pure functions of their block: on the workers
            blocks.run(into_out, range(0, n, chunk), kind="evaluate")
        else:  # functional_call swaps the module's parameters: one block at a time
            for a in range(0, n, chunk):
                into_out(a)
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def probabilities(model: nn.Module, flat: torch.Tensor, x: torch.Tensor, buffers: Buffers | None = None,
                  ) -> np.ndarray:
    """Class probabilities (float64 [rows, classes]) of one model's parameters (`flat`: [P] or
    [1, P]) and buffers ([1, ...] or None: the template's), in eval mode."""
    specs = param_specs(model)
    params = {k: v[0] for k, v in unflatten(flat.reshape(1, -1), specs).items()}
    bufs = dict(model.named_buffers()) if buffers is None else {k: v[0] for k, v in buffers.items()}
    was_training = model.training
    model.eval()
    try:
        logits = functional_call(model, (params, bufs), (x,))
    finally:
        model.train(was_training)
    return torch.softmax(logits.double(), dim=1).numpy()


def average_buffers(buffers: Buffers) -> Buffers:
    """Buffers for the averaged model ([1, ...]): the mean of floating buffers (running
    statistics), the first node's value of the others (e.g. BatchNorm's step counter)."""
    return {k: v.mean(dim=0, keepdim=True) if v.is_floating_point() else v[:1] for k, v in buffers.items()}


def consensus_distance(flat: torch.Tensor) -> float:
    """(1/n) sum_i ||x_i - mean||^2, in float64, a block of rows at a time (the same numbers as
    on the whole [N, P] array, without its two float64 copies: 950 MB at 50,000 nodes)."""
    mean = torch.mean(flat, dim=0, keepdim=True, dtype=torch.float64)
    per_node = torch.empty(flat.shape[0], dtype=torch.float64)
    for a in range(0, flat.shape[0], 4096):
        centered = flat[a : a + 4096].double() - mean
        per_node[a : a + 4096] = centered.pow_(2).sum(dim=1)
    return float(per_node.mean())
