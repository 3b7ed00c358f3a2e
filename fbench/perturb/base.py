"""The perturbation contract.

A perturbation maps a batch of clean images to perturbed ones, on the batch's device, with torch ops only. It is
deterministic per (sample, condition, seed): each sample's random draws come from its own 64-bit key (see
``fbench.perturb.keys``), never from a global generator, so the result does not depend on batch composition,
order or device. Landmarks (N x 6 x 2, ``fbench.data.table.LANDMARKS`` order, x and y normalised to [0, 1] in
the cached image; NaN where unknown) place face-aware occluders and masks; where they are unknown, canonical
positions for the sample's pose are used. Landmarks may also come as N x 6 x 4: x, y and the half-widths of their
uncertainty along x and y (calibrated positions, ``fbench.data.placement``); occluders aimed at a point then reach
past it by that much.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch


class Perturbation(ABC):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Declared parameters: name -> (type, default, allowed values or None). "severity" is a float in [0, 1].
    parameters: ClassVar[dict[str, tuple[type, Any, tuple[Any, ...] | None]]] = {}

    @abstractmethod
    def apply(self, images: torch.Tensor, landmarks: torch.Tensor, keys: torch.Tensor, **params: Any
              ) -> torch.Tensor:
        """Perturb ``images`` (N x C x H x W float in [0, 1]) given per-sample ``landmarks`` (N x 6 x 2, or
        N x 6 x 4 with their uncertainty) and per-sample int64 ``keys`` (N,); returns a new tensor of the same
        shape, dtype and device."""
