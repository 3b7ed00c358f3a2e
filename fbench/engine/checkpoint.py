"""Model weights on disk: written atomically, read back with ``weights_only=True``."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from fbench.data.files import write_atomic
from fbench.errors import FbenchError


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_state(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``path`` atomically: a crash never leaves a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(cpu_state(model), buffer)
    return write_atomic(path, buffer.getvalue())


def load_state(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (tensors only: ``weights_only=True``)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FbenchError(f"checkpoint {path} does not exist") from None
    model.load_state_dict(state)
    return model
