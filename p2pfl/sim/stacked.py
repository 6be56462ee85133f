"""N stacked Linear/ReLU models (mlp, logreg) run at once with batched matrix products.

torch.func.vmap over `functional_call` turns each nn.Linear of N stacked models into a batched
matrix product plus a broadcast bias and each ReLU into one elementwise op; this module issues
those same aten ops itself (bmm, add, relu), so logits and their gradients are bit for bit
vmap's, without vmap's and functional_call's Python work per call (most of the time of a small
network's round). Any other model (a CNN, BatchNorm, user code) goes through vmap.
"""

from __future__ import annotations

import torch
from torch import nn

from p2pfl.learning.models._component import FlatSequential

Layers = list[tuple[str, str] | None]  # per layer: (weight name, bias name or ""), None: ReLU


def linear_layers(model: nn.Module) -> Layers | None:
    """The layers of a FlatSequential of nn.Linear and nn.ReLU without buffers, else None."""
    if type(model) is not FlatSequential or next(model.buffers(), None) is not None:
        return None
    layers: Layers = []
    for name, layer in model.named_children():
        if type(layer) is nn.Linear:
            layers.append((f"{name}.weight", f"{name}.bias" if layer.bias is not None else ""))
        elif type(layer) is nn.ReLU and not layer.inplace:
            layers.append(None)
        else:
            return None
    return layers


def forward(layers: Layers, params: dict[str, torch.Tensor], x: torch.Tensor,
            shared: bool = False) -> torch.Tensor:
    """Logits [N, B, classes] of the N models in `params` (name -> [N, *shape]) on their own
    batches x [N, B, *input_shape], or with `shared` on one batch x [B, *input_shape] for all.

    The bias and the ReLU act in place on the product's fresh output: the values of h + b and
    relu(h), one [N, B, width] tensor fewer each (autograd needs neither's input).
    """
    n = next(iter(params.values())).shape[0]
    h = x.reshape(x.shape[0], -1).expand(n, -1, -1) if shared else x.reshape(n, x.shape[1], -1)
    for layer in layers:
        if layer is None:
            h = h.relu_()
            continue
        weight, bias = layer
        h = torch.bmm(h, params[weight].transpose(1, 2))
        if bias:
            h = h.add_(params[bias].unsqueeze(1))
    return h
