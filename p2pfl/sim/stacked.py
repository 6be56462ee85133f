"""N stacked Linear/ReLU models (mlp, logreg) run at once with batched matrix products.

torch.func.vmap over `functional_call` turns each nn.Linear of N stacked models into a batched
matrix product plus a broadcast bias and each ReLU into one elementwise op; this module issues
those same aten ops itself (bmm, add, relu), so logits are bit for bit vmap's, without vmap's
and functional_call's Python work per call. `loss_and_gradients` also writes out the backward
pass: the kernels autograd runs for it (nll_loss and log-softmax backward, threshold_backward,
bmm, sum) on the same tensors, so the gradients are autograd's bit for bit, without building a
graph (half of a small network's step). Any other model (a CNN, BatchNorm, user code) goes
through vmap and autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from p2pfl.learning.models._component import FlatSequential

Layers = list[tuple[str, str] | None]  # per layer: (weight name, bias name or ""), None: ReLU
MIDDLE_CLASSES = 16384  # logits from which the loss takes them as [N, classes, B]


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


def loss_and_gradients(layers: Layers, params: dict[str, torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor, valid: torch.Tensor | None,
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each model's mean cross-entropy on its batch ([N]; over the valid rows when `valid`
    [N, B] is given), and the gradient of their sum: one tensor per parameter in the order of
    `params` ([N, *shape]; a weight's is a transposed view, as autograd gives it).

    From MIDDLE_CLASSES logits on, the loss takes them as [N, classes, B]: log-softmax over a
    middle dimension is an order of magnitude faster than over a last dimension of a few
    classes, with the same values.
    """
    n, b = y.shape
    h = x.reshape(n, b, -1)
    saved = []  # per layer: its input (Linear) or output (ReLU)
    for layer in layers:
        if layer is None:
            h = h.relu_()
            saved.append(h)
            continue
        weight, bias = layer
        saved.append(h)
        h = torch.bmm(h, params[weight].transpose(1, 2))
        if bias:
            h = h.add_(params[bias].unsqueeze(1))
    classes = h.shape[2]
    middle = h.numel() >= MIDDLE_CLASSES
    if middle:  # [N, classes, B]
        log_p = torch._log_softmax(h.transpose(1, 2).contiguous(), 1, False)
        target = y.unsqueeze(1)
    else:  # [N * B, classes]: fewer ops for a small network's few logits
        log_p = torch._log_softmax(h.view(n * b, classes), 1, False)
        target = y.reshape(n * b, 1)
    ce = log_p.gather(1, target).view(n, b).neg_()  # nll_loss: -log p[target]
    # Backward from sum over nodes of the per-node loss, as autograd takes it.
    if valid is None:
        per_node = ce.mean(dim=1)
        g_ce = torch.ones(n, 1).expand(n, b) / b  # MeanBackward
    elif bool(valid.all()):  # the masked sums over every row, in fewer ops: the same numbers
        per_node = ce.sum(dim=1) / b
        g_ce = torch.ones(n, 1).expand(n, b) / b
    else:
        v = valid.to(ce.dtype)
        total = v.sum(dim=1).clamp_min(1.0)
        per_node = (ce * v).sum(dim=1) / total
        g_ce = (torch.ones(n) / total).unsqueeze(1).expand(n, b) * v  # Div, Sum, Mul backward
    g_log_p = torch.zeros_like(log_p).scatter_(1, target, g_ce.neg().view(target.shape))  # NllLoss backward
    g = torch._log_softmax_backward_data(g_log_p, log_p, 1, log_p.dtype)
    # [N, B, classes], as autograd's grad of the logits
    g = g.transpose(1, 2).contiguous() if middle else g.view(n, b, classes)
    grads: dict[str, torch.Tensor] = {}
    for index in range(len(layers) - 1, -1, -1):
        layer, kept = layers[index], saved[index]
        if layer is None:
            g = torch.ops.aten.threshold_backward(g, kept, 0)
            continue
        weight, bias = layer
        if bias:
            grads[bias] = g.sum(dim=1)
        grads[weight] = torch.bmm(kept.transpose(1, 2), g).transpose(1, 2)
        if any(earlier is not None for earlier in layers[:index]):
            g = torch.bmm(g, params[weight])
    return per_node, [grads[name] for name in params]
