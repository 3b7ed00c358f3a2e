"""Model weights on disk: written atomically, read back with ``weights_only=True``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from fbench.errors import FbenchError


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_state(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``path`` through a temporary file in the same folder and
    ``os.replace``, so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(cpu_state(model), stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_state(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (tensors only: ``weights_only=True``)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FbenchError(f"checkpoint {path} does not exist") from None
    model.load_state_dict(state)
    return model
