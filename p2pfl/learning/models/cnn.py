"""A small convolutional network for image inputs (C, H, W).

Two 3x3 convolutions (16 and 32 channels, padding 1) each followed by ReLU and 2x2 max
pooling, then one linear layer: on 8x8 digits that is 16x4x4 -> 32x2x2 -> 128 -> classes
(about 5.4k parameters). The LeNet pattern (LeCun et al., Proc. IEEE 1998), made smaller.
"""

from __future__ import annotations

from torch import nn

from p2pfl.learning.errors import LearningSettingError
from p2pfl.learning.models._component import ModelComponent

CHANNELS = (16, 32)


def build(input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...]) -> nn.Module:
    if len(input_shape) != 3:
        raise LearningSettingError(f"model cnn needs image inputs (channels, height, width), "
                        f"the data has rows of shape {input_shape}")
    c, h, w = input_shape
    scale = 2 ** len(CHANNELS)
    if h < scale or w < scale:
        raise LearningSettingError(f"model cnn needs images of at least {scale}x{scale}, got {h}x{w}")
    layers: list[nn.Module] = []
    for out in CHANNELS:
        layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = out
    layers += [nn.Flatten(), nn.Linear(c * (h // scale) * (w // scale), n_classes)]
    return nn.Sequential(*layers)


COMPONENT = ModelComponent(
    "cnn", "small CNN for images: conv3x3(16)-pool-conv3x3(32)-pool-linear", build,
    paper="LeCun et al., Gradient-based learning applied to document recognition, Proc. IEEE 1998",
)
