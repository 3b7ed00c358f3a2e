"""Training under perturbations: a fixed share of the training (and validation) images is perturbed.

Each image is assigned, by a hash of its id and the seed, to stay clean or to one of the training conditions,
in about equal shares; the chosen perturbation is applied once, before training, with the same per-sample draws
every epoch (as a dataset of masked faces would hold them). Online augmentation then applies on top.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from fbench.data.transforms import to_float
from fbench.errors import FbenchError
from fbench.perturb.apply import apply_condition, resolve_condition
from fbench.suite.conditions import CLEAN


def assign_conditions(sample_ids: Sequence[str], conditions: Sequence[str], seed: int) -> list[str]:
    """For each sample: ``"clean"`` or one of ``conditions``, by a stable hash of (seed, sample id), so the
    assignment depends on nothing else (not the batch, the order or the other samples)."""
    choices = [CLEAN, *conditions]
    assigned = []
    for sample_id in sample_ids:
        digest = hashlib.blake2b(f"fbench-train-mix\x1f{int(seed)}\x1f{sample_id}".encode(), digest_size=8).digest()
        assigned.append(choices[int.from_bytes(digest, "little") % len(choices)])
    return assigned


def perturb_for_training(images: torch.Tensor, conditions: Sequence[str], *, sample_ids: Sequence[str],
                         landmarks: torch.Tensor | None, poses: Sequence[str] | None, seed: int,
                         batch_size: int = 256) -> torch.Tensor:
    """``images`` (N x C x H x W uint8) with each sample's assigned condition applied (uint8, same device).
    Without conditions the images are returned as they are."""
    if not conditions:
        return images
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise FbenchError("perturb_for_training needs N x C x H x W uint8 images")
    if len(sample_ids) != images.shape[0]:
        raise FbenchError(f"perturb_for_training: {images.shape[0]} images but {len(sample_ids)} sample ids")
    for condition in conditions:
        resolve_condition(condition)  # a bad condition fails before any work
    assigned = assign_conditions(sample_ids, conditions, seed)
    out = images.clone()
    for condition in conditions:
        rows = [i for i, chosen in enumerate(assigned) if chosen == condition]
        for begin in range(0, len(rows), batch_size):
            chunk = rows[begin:begin + batch_size]
            index = torch.tensor(chunk, device=images.device)
            batch = apply_condition(
                condition, to_float(images.index_select(0, index)),
                landmarks.index_select(0, index.to(landmarks.device)) if landmarks is not None else None,
                [sample_ids[i] for i in chunk], seed,
                [poses[i] for i in chunk] if poses is not None else None)
            out.index_copy_(0, index, (batch.clamp(0, 1) * 255).round().to(torch.uint8))
    return out
