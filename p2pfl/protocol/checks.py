"""Check a verified update against the local model before it is combined."""

from __future__ import annotations

import torch

from p2pfl.learning.params import fingerprint
from p2pfl.protocol.codec import state_dict
from p2pfl.protocol.messages import DTYPE_NAMES, InvalidMessage, ModelUpdate, ProtocolViolation

Spec = tuple[str, tuple[int, ...], torch.dtype]


def check_against(update: ModelUpdate, specs: list[Spec]) -> dict[str, torch.Tensor]:
    """The update's tensors by name, after checking they fit the local model's `specs`.

    Raises ProtocolViolation for another encoding or architecture fingerprint, InvalidMessage
    for missing, extra or reordered tensors, a shape or dtype mismatch, or any NaN or infinite
    value.
    """
    if update.encoding != "dense":
        raise ProtocolViolation(f"update is encoded as {update.encoding!r}; this node expects dense models")
    expected = fingerprint(specs)
    if update.fingerprint != expected:
        raise ProtocolViolation(
            f"model fingerprint {update.fingerprint[:16]} does not match the local model's "
            f"{expected[:16]}: the sender trains a different architecture"
        )
    names = [rec.name for rec in update.tensors]
    wanted = [name for name, _, _ in specs]
    if names != wanted:
        missing = [n for n in wanted if n not in names]
        extra = [n for n in names if n not in wanted]
        if missing or extra:
            raise InvalidMessage(
                f"tensors do not match the model: missing {missing}, extra {extra}"
            )
        raise InvalidMessage("tensors are not in the model's parameter order")
    for rec, (name, shape, dtype) in zip(update.tensors, specs, strict=True):
        if rec.shape != tuple(shape):
            raise InvalidMessage(
                f"tensor {name!r} has shape {rec.shape}, the model has {tuple(shape)}"
            )
        if rec.dtype != DTYPE_NAMES.get(dtype):
            raise InvalidMessage(f"tensor {name!r} has dtype {rec.dtype}, the model has {dtype}")
    tensors = state_dict(update)
    for name, t in tensors.items():
        if t.is_floating_point():
            bad = t.numel() - int(torch.isfinite(t).sum())
            if bad:
                raise InvalidMessage(f"tensor {name!r} has {bad} NaN or infinite value(s)")
    return tensors
