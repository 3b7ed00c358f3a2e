"""Problems with a suite: the error that carries them, key paths, and the one format they are reported in.

A problem is a key path inside the suite (``("architectures", 0, "recipe", "lr")``) and a message. Reported, it
reads ``FILE: key.path: message (did you mean 'x'?)``; :class:`SuiteError` carries every problem of a file at
once. Pydantic's validation errors are translated here: an unknown key gets a did-you-mean against the field
names at its level, a pattern mismatch a sentence saying what the pattern allows.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from fbench.errors import FbenchError, did_you_mean

KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str]

# What a field's pattern allows, in words, by field name.
PATTERN_MESSAGES = {
    "name": "a name may hold only lowercase letters, digits, '_' and '-'",
    "device": "unknown device; use auto, cpu, cuda, cuda:N or mps",
}


class SuiteError(FbenchError):
    """An invalid suite. ``problems`` lists every problem as ``FILE: key.path: problem``."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the suite:\n" + "\n".join(
                f"  {p}" for p in self.problems)
        super().__init__(message)


def path_text(path: KeyPath) -> str:
    """``("architectures", 0, "name")`` -> ``"architectures.0.name"``."""
    return ".".join(str(part) for part in path)


def unknown_name(what: str, name: str, candidates: Iterable[str]) -> str:
    """``unknown budget 'quik' (did you mean 'quick'?); known: paper, quick, smoke``."""
    known = sorted(dict.fromkeys(candidates))
    return f"unknown {what} {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or 'none'}"


def format_problems(source: str, problems: Iterable[Problem], notes: Mapping[str, str] | None = None) -> list[str]:
    """Each problem as ``SOURCE: key.path: message``, once; ``notes`` maps a key path (and the keys under it) to
    where its value came from (``--set ...``), appended as ``[from ...]``."""
    lines: list[str] = []
    for path, message in problems:
        text = path_text(path)
        note = ""
        for key, origin in (notes or {}).items():
            if text == key or text.startswith(key + "."):
                note = f" [from {origin}]"
        line = f"{source}: {text}: {message}{note}" if text else f"{source}: {message}{note}"
        if line not in lines:
            lines.append(line)
    return lines


def document_order(problems: list[Problem], raw: Mapping[str, Any]) -> list[Problem]:
    """Problems sorted by where their top-level key sits in the file (stable within a key)."""
    order: dict[Any, int] = {key: i for i, key in enumerate(raw)}
    return sorted(problems, key=lambda problem: order.get(problem[0][0], len(order)) if problem[0] else -1)


# --------------------------------------------------------------------------------------------------- pydantic


def unwrap_optional(kind: Any) -> Any:
    """``X | None`` -> ``X``; any other annotation as it is."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return kind


def model_at(root: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The model class whose fields are the keys at ``path`` inside data for ``root``, if that place is a model."""
    kind: Any = root
    for part in path:
        kind = unwrap_optional(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
            continue
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin in (list, tuple) and args:
            kind = args[0]
        elif origin is dict and len(args) == 2:
            kind = args[1]
        else:
            return None
    kind = unwrap_optional(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def is_list_at(root: type[BaseModel], path: KeyPath) -> bool:
    """Whether the schema of ``root`` holds a list at ``path`` (a field of a model)."""
    model = model_at(root, path[:-1])
    field = model.model_fields.get(str(path[-1])) if model and path else None
    return field is not None and typing.get_origin(unwrap_optional(field.annotation)) is list


def pydantic_message(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) in words, with the offending value."""
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if error["type"] == "missing":
        return "required key is missing"
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 60 and error["type"] != "extra_forbidden":
        message += f" (got {value!r})"
    return message


def pydantic_problems(error: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """The problems of a ``ValidationError`` raised validating data for ``root``."""
    problems: list[Problem] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden" and loc:
            model = model_at(root, loc[:-1])
            fields = list(model.model_fields) if model else []
            hint = did_you_mean(str(loc[-1]), fields)
            message = f"unknown key {loc[-1]!r}{hint}" + ("" if hint or not fields
                                                         else f"; valid keys: {', '.join(fields)}")
            problems.append((loc, message))
        elif item["type"] == "string_pattern_mismatch" and loc and loc[-1] in PATTERN_MESSAGES:
            problems.append((loc, f"{PATTERN_MESSAGES[str(loc[-1])]} (got {item['input']!r})"))
        else:
            problems.append((loc, pydantic_message(item)))
    return problems
