"""Conditions as strings (``mask:kind=surgical,severity=0.8``) applied to a batch.

``apply_condition`` looks the perturbation up in the registry, checks its parameters, fills unknown landmarks
with canonical ones for the sample's pose, derives the per-sample keys and applies it. The keys hash the
condition's canonical form *without* its severity, so a severity sweep reuses each sample's draws (the same
rectangles grow, the same hand gets bigger) and the curves over severity are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fbench.errors import FbenchError
from fbench.perturb.keys import sample_keys
from fbench.perturb.landmarks import fill_missing
from fbench.perturb.params import validate_params
from fbench.registry import get_perturbation
from fbench.suite.conditions import parse_condition


def canonical_condition(name: str, params: dict[str, Any], *, without: Sequence[str] = ()) -> str:
    """``name:k=v,...`` with the keys sorted (what the per-sample keys hash)."""
    items = [f"{k}={params[k]!r}" for k in sorted(params) if k not in without]
    return name + (":" + ",".join(items) if items else "")


def resolve_condition(condition: str) -> tuple[Any, dict[str, Any], str]:
    """(perturbation, checked parameters with defaults, the key string) for a condition."""
    name, params = parse_condition(condition)
    perturbation = get_perturbation(name)
    resolved = validate_params(perturbation, params)
    return perturbation, resolved, canonical_condition(name, resolved, without=("severity",))


def apply_condition(condition: str, images: torch.Tensor, landmarks: torch.Tensor | None,
                    sample_ids: Sequence[str], seed: int, poses: Sequence[str] | None = None) -> torch.Tensor:
    """Apply ``condition`` to ``images`` (N x C x H x W float in [0, 1]) on their device.

    ``landmarks`` (N x 6 x 2 normalised, NaN where unknown, or None; or N x 6 x 4 with each point's uncertainty,
    as cached) are filled per pose; each sample's draws depend only on (sample id, condition without severity,
    seed)."""
    perturbation, params, key_text = resolve_condition(condition)
    n = images.shape[0]
    if len(sample_ids) != n:
        raise FbenchError(f"condition {condition!r}: got {n} images but {len(sample_ids)} sample ids")
    if poses is not None and len(poses) != n:
        raise FbenchError(f"condition {condition!r}: got {n} images but {len(poses)} poses")
    if landmarks is None:
        filled = fill_missing(None, poses, count=n)
    else:
        filled = fill_missing(torch.as_tensor(landmarks), poses)
    keys = sample_keys(list(sample_ids), key_text, seed)
    return perturbation.apply(images, filled.to(images.device), keys.to(images.device), **params)
