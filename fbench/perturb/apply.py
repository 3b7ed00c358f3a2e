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

EXAMPLE = "mask:kind=surgical,severity=0.8"


def parse_value(text: str) -> Any:
    """A parameter value: true/false, none/null, an int, a float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_condition(condition: str) -> tuple[str, dict[str, Any]]:
    """``"mask:kind=surgical,severity=0.8"`` -> ``("mask", {"kind": "surgical", "severity": 0.8})``.

    Numbers become int or float, true/false booleans, the rest strings; the perturbation checks them."""
    if not isinstance(condition, str) or not condition.strip():
        raise FbenchError(f"condition {condition!r} is empty; write NAME or NAME:key=value,..., e.g. {EXAMPLE}")
    name, _, rest = condition.strip().partition(":")
    name = name.strip()
    if not name:
        raise FbenchError(f"condition {condition!r} has no perturbation name before ':'; e.g. {EXAMPLE}")
    params: dict[str, Any] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise FbenchError(f"condition {condition!r}: {item!r} is not key=value; e.g. {EXAMPLE}")
        if key in params:
            raise FbenchError(f"condition {condition!r} sets {key!r} twice")
        params[key] = parse_value(value)
    return name, params


def canonical_condition(name: str, params: dict[str, Any], *, without: Sequence[str] = ()) -> str:
    """``name:k=v,...`` with the keys sorted (what the per-sample keys hash)."""
    items = [f"{k}={params[k]!r}" for k in sorted(params) if k not in without]
    return name + (":" + ",".join(items) if items else "")


def resolve_condition(condition: str) -> tuple[Any, dict[str, Any], str]:
    """(perturbation, checked parameters with defaults, the key string) for a condition."""
    from fbench.registry import get_perturbation

    name, params = parse_condition(condition)
    perturbation = get_perturbation(name)
    resolved = validate_params(perturbation, params)
    return perturbation, resolved, canonical_condition(name, resolved, without=("severity",))


def apply_condition(condition: str, images: torch.Tensor, landmarks: torch.Tensor | None,
                    sample_ids: Sequence[str], seed: int, poses: Sequence[str] | None = None) -> torch.Tensor:
    """Apply ``condition`` to ``images`` (N x C x H x W float in [0, 1]) on their device.

    ``landmarks`` (N x 6 x 2 normalised, NaN where unknown, or None) are filled per pose; each sample's draws
    depend only on (sample id, condition without severity, seed)."""
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
