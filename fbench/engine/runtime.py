"""Device-side execution settings: mixed precision and memory format."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Amp = bool | Literal["auto"]


def use_amp(amp: Amp, device: torch.device) -> bool:
    """bf16 autocast runs on CUDA only; ``"auto"`` and ``True`` turn it on there, and it is off elsewhere."""
    return bool(amp) and device.type == "cuda"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (no loss scaling is needed for bf16)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def use_channels_last(channels_last: bool, device: torch.device) -> bool:
    """channels_last helps convolutions on CUDA; on CPU it is left off."""
    return channels_last and device.type == "cuda"


def batch_format(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
