"""Flatten/unflatten model parameters and fingerprint an architecture."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import nn


def param_specs(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the model's parameters, in registration order."""
    return [(name, tuple(p.shape), p.dtype) for name, p in model.named_parameters()]


def num_params(model: nn.Module) -> int:
    """Total number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())


def flatten(tensors: Mapping[str, torch.Tensor] | nn.Module) -> torch.Tensor:
    """Concatenate parameters (a module or a name->tensor mapping) into one 1-D tensor."""
    if isinstance(tensors, nn.Module):
        tensors = dict(tensors.named_parameters())
    return torch.cat([t.detach().reshape(-1) for t in tensors.values()])


def unflatten(
    flat: torch.Tensor, specs: list[tuple[str, tuple[int, ...], torch.dtype]]
) -> dict[str, torch.Tensor]:
    """Split a 1-D tensor (or the last dim of an [N, P] tensor) into named views.

    With a 2-D input the views keep the leading node dimension: shape [N, *shape].
    """
    total = sum(_numel(shape) for _, shape, _ in specs)
    if flat.shape[-1] != total:
        raise ValueError(f"flat tensor has {flat.shape[-1]} values, the model has {total}")
    lead = tuple(flat.shape[:-1])
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name, shape, _ in specs:
        n = _numel(shape)
        out[name] = flat.narrow(-1, start, n).view(*lead, *shape)  # narrow: the slice, cheaper
        start += n
    return out


def load_flat(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a 1-D parameter vector into the model in place."""
    with torch.no_grad():
        for p, v in zip(model.parameters(), unflatten(flat, param_specs(model)).values(), strict=True):
            p.copy_(v)


def fingerprint(model: nn.Module | list[tuple[str, tuple[int, ...], torch.dtype]]) -> str:
    """SHA-256 (hex) of parameter names, shapes and dtypes: equal iff architectures match."""
    specs = param_specs(model) if isinstance(model, nn.Module) else model
    text = "\n".join(f"{n}:{'x'.join(map(str, s))}:{str(d).removeprefix('torch.')}" for n, s, d in specs)
    return hashlib.sha256(text.encode()).hexdigest()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
