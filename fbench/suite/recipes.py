"""Recipe overrides: a suite entry's ``recipe:`` checked against the ``Recipe`` fields and applied to a base recipe.

``schedule`` and ``early_stopping`` are replaced as a whole; ``schedule: cosine`` is short for ``{kind: cosine}``,
``early_stopping: false`` turns it off, and an augmentation may be given by name alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from fbench.contract import Augment, EarlyStopping, Recipe, Schedule
from fbench.errors import FbenchError, did_you_mean
from fbench.suite.problems import KeyPath, Problem, path_text, pydantic_message

# Recipe fields whose value is a dataclass of its own, checked key by key.
NESTED_FIELDS: dict[str, type] = {"schedule": Schedule, "early_stopping": EarlyStopping}


@functools.lru_cache(maxsize=1)
def _recipe_adapter() -> TypeAdapter[Recipe]:
    return TypeAdapter(Recipe)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _key_problems(overrides: Mapping[str, Any]) -> list[Problem]:
    """Unknown keys in recipe overrides, their nested schedule and early_stopping, and augmentation items."""
    fields = _field_names(Recipe)
    problems: list[Problem] = []
    for key, value in overrides.items():
        if key not in fields:
            problems.append(((key,), f"Recipe has no field {key!r}{did_you_mean(key, fields)}; fields: "
                                     f"{', '.join(fields)}"))
            continue
        nested = NESTED_FIELDS.get(key)
        items: list[tuple[KeyPath, Any, type]] = [((key,), value, nested)] if nested else []
        if key == "augmentation" and isinstance(value, list):
            items = [((key, i), item, Augment) for i, item in enumerate(value)]
        for path, item, cls in items:
            if isinstance(item, Mapping):
                known = _field_names(cls)
                for sub in item:
                    if sub not in known:
                        problems.append(((*path, sub), f"{cls.__name__} has no field {sub!r}"
                                                       f"{did_you_mean(sub, known)}; fields: {', '.join(known)}"))
    return problems


def _recipe_data(base: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    data = dataclasses.asdict(base)
    for key, value in overrides.items():
        if key == "schedule" and isinstance(value, str):
            value = {"kind": value}
        elif key == "early_stopping" and value is False:
            value = None
        elif key == "augmentation" and isinstance(value, list):
            value = [{"name": item} if isinstance(item, str) else item for item in value]
        data[key] = value
    return data


def recipe_problems(base: Recipe, overrides: Mapping[str, Any]) -> list[Problem]:
    """Problems with ``overrides`` of the ``Recipe`` ``base``, as (key path inside the overrides, message)."""
    problems = _key_problems(overrides)
    if problems:
        return problems
    try:
        _recipe_adapter().validate_python(_recipe_data(base, overrides))
    except ValidationError as error:
        return [(tuple(e["loc"]), pydantic_message(e)) for e in error.errors()]
    except FbenchError as error:
        return [((), str(error))]
    return []


def recipe_with_overrides(base: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """The ``Recipe`` ``base`` with suite overrides applied (``schedule`` and ``early_stopping`` are replaced as a
    whole; ``schedule: cosine`` and augmentation names are shorthands). Raises FbenchError naming each bad key."""
    problems = recipe_problems(base, overrides)
    if problems:
        raise FbenchError("; ".join(f"recipe.{path_text(p)}: {m}" if p else f"recipe: {m}" for p, m in problems))
    return _recipe_adapter().validate_python(_recipe_data(base, overrides))
