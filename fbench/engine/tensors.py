"""The tensors a training or evaluation pass reads: one split of the decoded-image cache, on the device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fbench.errors import FbenchError

if TYPE_CHECKING:
    from fbench.data.cache import CachedImages


@dataclass(frozen=True)
class EvalData:
    """Images (N x C x H x W uint8), labels (N int64) on one device, and the samples' ids (N)."""

    images: torch.Tensor
    labels: torch.Tensor
    sample_ids: Sequence[str]  # any sequence; kept as a tuple

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4 or self.images.dtype != torch.uint8:
            shape = tuple(self.images.shape) if isinstance(self.images, torch.Tensor) else type(self.images)
            raise FbenchError(f"{type(self).__name__} needs images as an N x C x H x W uint8 tensor (got {shape})")
        n = self.images.shape[0]
        if self.labels.shape != (n,) or len(self.sample_ids) != n:
            raise FbenchError(f"{type(self).__name__}: {n} images but {tuple(self.labels.shape)} labels and "
                              f"{len(self.sample_ids)} sample ids; give one label and one id per image")
        if n == 0:
            raise FbenchError(f"{type(self).__name__} is empty: the split has no samples")
        object.__setattr__(self, "sample_ids", tuple(self.sample_ids))
        object.__setattr__(self, "labels", self.labels.to(device=self.images.device, dtype=torch.long))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    @classmethod
    def from_cache(cls, cache: CachedImages, sample_ids: Sequence[str]) -> EvalData:
        """The rows of ``cache`` for ``sample_ids`` (a split's part), on the cache's device."""
        rows = cache.positions(list(sample_ids)).to(cache.images.device)
        return cls(cache.images.index_select(0, rows), cache.labels.to(rows.device).index_select(0, rows),
                   tuple(sample_ids))

    def to(self, device: torch.device | str) -> EvalData:
        return type(self)(self.images.to(device), self.labels.to(device), self.sample_ids)


@dataclass(frozen=True)
class TrainData(EvalData):
    """The training split. Offline augmentation expands it inside ``train_model``, once per call."""
