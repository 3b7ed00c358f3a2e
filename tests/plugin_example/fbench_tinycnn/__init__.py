"""An example fbench plugin: a tiny CNN registered under the name ``tiny_cnn``."""

from __future__ import annotations

from typing import Literal

import torch.nn as nn

from fbench.contract import ArchitectureSpec, Recipe
from fbench.registry import register_architecture

TINY_CNN_SPEC = ArchitectureSpec(
    input_size=(1, 48, 48),
    mean=(0.5,),
    std=(0.5,),
    num_classes=7,
    recipe=Recipe(optimizer="adam", lr=1e-3, epochs=30, batch_size=64, source="example plugin"),
)


@register_architecture("tiny_cnn", spec=TINY_CNN_SPEC)
def tiny_cnn(num_classes: int, *, in_chans: int = 1, width: int = 16,
             activation: Literal["relu", "gelu"] = "relu") -> nn.Module:
    """A three-layer CNN: the smallest useful example of a plugin."""
    act = nn.ReLU if activation == "relu" else nn.GELU
    layers: list[nn.Module] = []
    channels = in_chans
    for scale in (1, 2, 4):
        layers += [nn.Conv2d(channels, width * scale, 3, padding=1), nn.BatchNorm2d(width * scale), act(),
                   nn.MaxPool2d(2)]
        channels = width * scale
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
