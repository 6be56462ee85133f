"""Models: a registry with one module per model (logreg, mlp, cnn), or a person's own model.

`model = NAME` picks a registered model; `model = "python:package.module:function"` imports
the person's factory (see `_python`). Every model maps a batch [B, *input_shape] to logits
[B, n_classes]; tables have input_shape (features,), images (channels, height, width).

Only parameters (`named_parameters`) are trained, mixed and sent between nodes. Buffers
(`named_buffers`, e.g. BatchNorm running statistics) stay local to each node, in both simulator
engines and in the node daemon.
"""

from __future__ import annotations

import torch
from torch import nn

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models._component import ModelComponent
from p2pfl.learning.models._python import FORM, build_python, check_form, is_python_spec
from p2pfl.registry import Registry

MODELS: Registry[ModelComponent] = Registry("model", "p2pfl.learning.models", LearningSettingError)


def parse_hidden(text: str | list[int] | tuple[int, ...] | None) -> tuple[int, ...]:
    """'32,16' -> (32, 16)."""
    if text is None or text == "":
        return (32,)
    if isinstance(text, (list, tuple)):
        sizes = tuple(int(h) for h in text)
    else:
        try:
            sizes = tuple(int(h) for h in str(text).split(",") if h.strip())
        except ValueError:
            raise LearningSettingError(f"--hidden must be comma-separated integers like 32,16, got "
                                       f"{text!r}") from None
    if not sizes or any(h < 1 for h in sizes):
        raise LearningSettingError(f"--hidden sizes must be positive integers, got {text!r}")
    return sizes


def choices() -> str:
    """'cnn, logreg, mlp or python:MODULE:FUNCTION' for help texts and errors."""
    return f"{MODELS.choices()} or {FORM}"


def check_model_spec(kind: str) -> None:
    """Cheap check of a model setting without building it (for `python:` only its form)."""
    if is_python_spec(kind):
        check_form(kind)
    elif kind not in MODELS:
        raise LearningSettingError(f"unknown model {kind!r}; choose one of {choices()}")


def build_model(
    kind: str, input_shape: tuple[int, ...] | int, n_classes: int, hidden: tuple[int, ...] = (32,),
    seed: int = 0,
) -> nn.Module:
    """A freshly initialised model for examples of `input_shape` (an int n means (n,)).

    The same (kind, shapes, hidden, seed) always gives the same weights: torch is seeded with
    `seed` while the model is built and the global RNG is restored afterwards.
    """
    shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
    check_model_spec(kind)
    gen_state = torch.random.get_rng_state()
    torch.default_generator.manual_seed(seed)  # the CPU generator (torch.manual_seed also queues CUDA's)
    try:
        if is_python_spec(kind):
            return build_python(kind, shape, n_classes)
        return MODELS.get(kind).factory(shape, n_classes, tuple(hidden))
    finally:
        torch.random.set_rng_state(gen_state)
