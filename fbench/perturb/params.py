"""Parameter checking for perturbations, and colours given by name or hex code."""

from __future__ import annotations

import math
from typing import Any

from fbench.errors import FbenchError, close_matches

COLOURS: dict[str, tuple[float, float, float]] = {
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.06),
    "grey": (0.55, 0.55, 0.57),
    "gray": (0.55, 0.55, 0.57),
    "lightblue": (0.60, 0.78, 0.92),
    "blue": (0.20, 0.35, 0.70),
    "navy": (0.10, 0.14, 0.35),
    "green": (0.55, 0.80, 0.70),
    "pink": (0.95, 0.72, 0.80),
    "red": (0.75, 0.15, 0.18),
    "yellow": (0.95, 0.85, 0.30),
    "beige": (0.90, 0.84, 0.72),
}


def describe(perturbation: Any) -> str:
    parts = []
    for name, (kind, default, allowed) in perturbation.parameters.items():
        if allowed is not None:
            parts.append(f"{name} (one of {', '.join(map(str, allowed))}; default {default})")
        elif name == "severity":
            parts.append(f"severity (a number in [0, 1]; default {default})")
        elif name == "color":
            parts.append(f"color (a name: {', '.join(sorted(COLOURS))}; or #rrggbb; default: per-sample palette)")
        else:
            parts.append(f"{name} ({kind.__name__}; default {default})")
    return "; ".join(parts)


def validate_params(perturbation: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the perturbation's declared ``parameters`` and fill defaults.

    Raises FbenchError naming the bad parameter or value and listing the valid ones."""
    name = perturbation.name or type(perturbation).__name__
    declared = perturbation.parameters
    resolved: dict[str, Any] = {key: spec[1] for key, spec in declared.items()}
    for key, value in params.items():
        if key not in declared:
            close = close_matches(key, declared, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise FbenchError(f"perturbation {name!r} has no parameter {key!r}.{hint} "
                              f"Valid parameters: {describe(perturbation)}")
        kind, _default, allowed = declared[key]
        resolved[key] = _coerce(name, key, value, kind, allowed, perturbation)
    return resolved


def _coerce(name: str, key: str, value: Any, kind: type, allowed: tuple[Any, ...] | None, perturbation: Any) -> Any:
    if value is None:
        return None
    if kind is float:
        if isinstance(value, bool):
            raise FbenchError(f"perturbation {name!r}: {key} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FbenchError(f"perturbation {name!r}: {key} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise FbenchError(f"perturbation {name!r}: {key} must be finite, got {value!r}")
        if key == "severity" and not 0.0 <= number <= 1.0:
            raise FbenchError(f"perturbation {name!r}: severity must be in [0, 1], got {value!r}")
        value = number
    elif kind is str:
        if key == "color":
            parse_colour(value)  # raises with the valid forms
            return value
        value = str(value)
    elif kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise FbenchError(f"perturbation {name!r}: {key} must be an integer, got {value!r}")
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise FbenchError(f"perturbation {name!r}: {key} must be an integer, got {value!r}") from None
    if allowed is not None and value not in allowed:
        close = close_matches(value, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise FbenchError(f"perturbation {name!r}: unknown {key} {value!r}.{hint} "
                          f"Valid: {', '.join(map(str, allowed))}")
    return value


def parse_colour(value: Any) -> tuple[float, float, float]:
    """An RGB triple in [0, 1] from a name, '#rrggbb', or three numbers in [0, 1]."""
    if isinstance(value, (tuple, list)) and len(value) == 3:
        try:
            triple = tuple(float(c) for c in value)
        except (TypeError, ValueError):
            triple = ()
        if len(triple) == 3 and all(0.0 <= c <= 1.0 for c in triple):
            return triple
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "").replace("_", "")
        if text in COLOURS:
            return COLOURS[text]
        if text.startswith("#") and len(text) == 7:
            try:
                red, green, blue = (int(text[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
            except ValueError:
                pass
            else:
                return red, green, blue
    raise FbenchError(f"unknown colour {value!r}; give a name ({', '.join(sorted(COLOURS))}), a hex code "
                      "like #a0c8f0, or three numbers in [0, 1]")
