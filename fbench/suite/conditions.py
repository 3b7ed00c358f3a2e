"""Evaluation conditions: one grammar, one set of names, defaults and labels.

A suite's ``conditions:`` list holds
- ``clean``: the unperturbed test set (always evaluated, always first);
- ``pose``: the per-pose breakdown of clean accuracy;
- ``subset:NAME``: clean predictions of the test samples the dataset tags ``cond_NAME`` (e.g. RAF-DB's occlusion
  and pose lists), scored beside the whole test set;
- a perturbation ``NAME:key=value,...``, e.g. ``occlusion:kind=rectangle,severity=0.25`` or ``mask:kind=surgical``.

:func:`parse_condition` is strict (suites, the engine: malformed text raises); :func:`read_condition` is lenient,
for stored results and reports, which never fail on a condition written by an older version. Nothing here imports
torch, so reading a report stays light.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from fbench.errors import FbenchError

CLEAN = "clean"
POSE = "pose"
SUBSET_PREFIX = "subset:"
SUBSET_NAME = re.compile(r"^[a-z0-9_]+$")
# Conditions that perturb nothing: the test set itself, and its per-pose breakdown.
SPECIAL_CONDITIONS: dict[str, str] = {
    CLEAN: "the unperturbed test set (always evaluated)",
    POSE: "per-pose breakdown of clean accuracy (uses the dataset's pose column)",
}
EXAMPLE = "mask:kind=surgical,severity=0.8"
# Parameter defaults of the perturbations (fbench.perturb.occlusion / .mask), for condition strings that omit them.
PERTURBATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "occlusion": {"kind": "rectangle", "severity": 0.25},
    "mask": {"kind": "surgical", "severity": 1.0},
}


def is_clean(condition: str | None) -> bool:
    """None and ``"clean"`` both mean the unperturbed images."""
    return condition is None or condition.strip() == CLEAN


def is_subset(condition: str) -> bool:
    return condition.startswith(SUBSET_PREFIX)


def is_perturbation(condition: str) -> bool:
    """Whether ``condition`` changes the images (everything but clean, the pose breakdown and subsets)."""
    return condition not in SPECIAL_CONDITIONS and not is_subset(condition)


def subset_column(condition: str) -> str:
    """``"subset:occlusion"`` -> ``"cond_occlusion"``."""
    return "cond_" + condition[len(SUBSET_PREFIX):]


def perturbations(conditions: Iterable[str]) -> tuple[str, ...]:
    return tuple(c for c in conditions if is_perturbation(c))


def subsets(conditions: Iterable[str]) -> tuple[str, ...]:
    return tuple(c for c in conditions if is_subset(c))


def clean_first(conditions: Iterable[str]) -> list[str]:
    """``clean`` first (added when missing), then the others in their order, each once."""
    stripped = [str(c).strip() for c in conditions]
    return [CLEAN, *dict.fromkeys(c for c in stripped if c != CLEAN)]


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
    """``"mask:kind=surgical,severity=0.8"`` -> ``("mask", {"kind": "surgical", "severity": 0.8})``, strictly.

    Numbers become int or float, true/false booleans, the rest strings; the perturbation checks them."""
    if not isinstance(condition, str) or not condition.strip():
        raise FbenchError(f"condition {condition!r} is empty; write NAME or NAME:key=value,..., e.g. {EXAMPLE}")
    name, _, rest = condition.strip().partition(":")
    name = name.strip()
    if not name:
        raise FbenchError(f"condition {condition!r} has no perturbation name before ':'; e.g. {EXAMPLE}")
    params: dict[str, Any] = {}
    for item, key, sep, value in _items(rest):
        if not sep or not key or not value:
            raise FbenchError(f"condition {condition!r}: {item!r} is not key=value; e.g. {EXAMPLE}")
        if key in params:
            raise FbenchError(f"condition {condition!r} sets {key!r} twice")
        params[key] = parse_value(value)
    return name, params


def read_condition(condition: str) -> tuple[str, dict[str, Any]]:
    """A stored condition as a name and parameters, leniently (a report never fails on a condition name).

    ``"occlusion:kind=rectangle,severity=0.25"`` -> ``("occlusion", {"kind": "rectangle", "severity": 0.25})``;
    ``"clean"`` -> ``("clean", {})``; ``"pose=FL"`` -> ``("pose", {"pose": "FL"})``. Numbers become int or float.
    An item without ``=`` is kept as ``{item: True}``.
    """
    text = str(condition).strip()
    if ":" in text:
        name, _, rest = text.partition(":")
    elif "=" in text:
        name, rest = text.partition("=")[0], text
    else:
        name, rest = text, ""
    params: dict[str, Any] = {}
    for _, key, sep, value in _items(rest):
        params[key] = parse_value(value) if sep else True
    return name.strip(), params


def _items(rest: str) -> list[tuple[str, str, bool, str]]:
    """The comma-separated items after a condition's name: (item, key, whether it has '=', value), stripped;
    the one grammar both readers share."""
    items = []
    for item in (part.strip() for part in rest.split(",")):
        if item:
            key, sep, value = item.partition("=")
            items.append((item, key.strip(), bool(sep), value.strip()))
    return items


def perturbation_point(condition: str) -> tuple[str, str, float] | None:
    """``(name, kind, severity)`` of an occlusion or mask condition, with the perturbation's defaults filled in.

    ``"occlusion:kind=eye_band,severity=0.5"`` -> ``("occlusion", "eye_band", 0.5)``;
    ``"mask:kind=n95"`` -> ``("mask", "n95", 1.0)``; None for any other condition (or a non-numeric severity).
    """
    name, params = read_condition(condition)
    defaults = PERTURBATION_DEFAULTS.get(name)
    if defaults is None:
        return None
    kind = str(params.get("kind", defaults["kind"]))
    severity = params.get("severity", defaults["severity"])
    try:
        finite = math.isfinite(float(severity))
    except (TypeError, ValueError):
        finite = False
    if isinstance(severity, bool) or not finite:
        return None
    return name, kind, float(severity)


def condition_label(condition: str) -> str:
    """A short display name: ``"occlusion:kind=rectangle,severity=0.25"`` -> ``"occlusion rectangle s=0.25"``."""
    name, params = read_condition(condition)
    if not params:
        return name
    parts = [name]
    for key, value in params.items():
        if key == name:  # "pose=FL"
            parts.append(str(value))
        elif key == "severity":
            continue
        elif key == "kind":
            parts.append(str(value))
        else:
            parts.append(f"{key}={value}")
    if "severity" in params:
        parts.append(f"s={params['severity']}")
    return " ".join(parts)
