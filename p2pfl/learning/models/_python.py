"""A person's own model: `python:package.module:function`, found with importlib.

`function(input_shape, n_classes)` must return an nn.Module mapping a batch [B, *input_shape]
to logits [B, n_classes]. Every way this can fail is one LearningSettingError naming the spec.
"""

from __future__ import annotations

import copy
import importlib
import re

import torch
from torch import nn

from p2pfl.learning.errors import LearningSettingError

PREFIX = "python:"
FORM = "python:MODULE:FUNCTION"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(rf"{_NAME}(\.{_NAME})*:{_NAME}")


def is_python_spec(kind: str) -> bool:
    return kind.startswith(PREFIX)


def check_form(kind: str) -> tuple[str, str]:
    """(module, function) of a `python:` spec; a LearningSettingError when it is not of that form."""
    rest = kind[len(PREFIX):]
    if not _SPEC.fullmatch(rest):
        raise LearningSettingError(f"model {kind!r} must be of the form {FORM} (e.g. "
                                   f"python:mypkg.models:make)")
    module, _, function = rest.partition(":")
    return module, function


def build_python(kind: str, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Import, call and check the person's model factory."""
    module_name, function = check_form(kind)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or any error raised while importing their code
        raise LearningSettingError(f"model {kind!r}: cannot import module {module_name!r}: "
                                   f"{_why(exc)}") from None
    fn = getattr(module, function, None)
    if fn is None:
        raise LearningSettingError(f"model {kind!r}: module {module_name!r} has no function {function!r}")
    if not callable(fn):
        raise LearningSettingError(f"model {kind!r}: {module_name}.{function} is not callable")
    try:
        model = fn(input_shape, n_classes)
    except Exception as exc:
        raise LearningSettingError(f"model {kind!r}: {function}{(input_shape, n_classes)} raised "
                                   f"{_why(exc)}") from None
    if not isinstance(model, nn.Module):
        raise LearningSettingError(f"model {kind!r}: {function} returned {type(model).__name__}, not a "
                                   f"torch nn.Module")
    _check_output(kind, model, input_shape, n_classes)
    return model


def _check_output(kind: str, model: nn.Module, input_shape: tuple[int, ...], n_classes: int) -> None:
    """A zero batch of two must give [2, n_classes] logits (run on a copy: buffers stay as built)."""
    probe = copy.deepcopy(model)
    try:
        with torch.no_grad():
            out = probe(torch.zeros(2, *input_shape))
    except Exception as exc:
        raise LearningSettingError(f"model {kind!r}: the forward pass on a batch of shape "
                        f"{[2, *input_shape]} raised {_why(exc)}") from None
    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != [2, n_classes]:
        raise LearningSettingError(f"model {kind!r}: a batch of shape {[2, *input_shape]} gave output "
                                   f"{shape}, "
                        f"expected [2, {n_classes}] (one logit per class)")


def _why(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
