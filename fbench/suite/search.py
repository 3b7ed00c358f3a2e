"""Search spaces: the ``search:`` block of a suite, parsed, checked and turned into Optuna suggestions.

A space maps parameter names to distributions. A name addresses either a ``Recipe`` field of the architecture
(``lr``, ``weight_decay``, ``batch_size``, ``label_smoothing``, ``epochs``, ``optimizer``, ...; nested fields with
dots: ``schedule.kind``, ``schedule.params.factor``, ``early_stopping.patience``) or one of the architecture's
declared variant options (``options.mass_att``). A distribution is one of::

    lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}     # also step: (linear only)
    epochs: {type: int, low: 4, high: 12, step: 2}               # also log: true
    batch_size: {type: categorical, choices: [16, 32, 64]}
    batch_size: [16, 32, 64]                                     # a list is shorthand for a categorical
    options.pwfs: {type: categorical}                            # choices default to the declared ones

Where a space comes from, first found wins: the suite's ``search: {<architecture name or label>: {...}}``; a
``<module>.search.yaml`` file beside the module that registers the architecture (``{<name>: {...}}``, the same
form); else the built-in default (:func:`default_space`).

Problems are reported as ``(key path, message)`` pairs, with did-you-mean hints, so that ``fbench validate`` and
``fbench tune`` name the file and key exactly as suite problems do.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fbench.contract import Architecture, Recipe
from fbench.errors import FbenchError, did_you_mean
from fbench.suite.problems import Problem, format_problems
from fbench.suite.recipes import NESTED_FIELDS, recipe_problems, recipe_with_overrides

Scalar = bool | int | float | str | None

OPTION_PREFIX = "options."
PARAM_TYPES = ("float", "int", "categorical")
_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
         "categorical": ("type", "choices")}
# Recipe fields that make no sense to search (free text, or structures a scalar cannot replace).
_NOT_SEARCHABLE = ("source", "augmentation", "lr_groups", "betas")
# Options that change the input the model expects, which the tuning data is decoded for once.
_INPUT_OPTIONS = ("in_chans", "img_size")
SIDE_FILE_SUFFIX = ".search.yaml"


@dataclass(frozen=True)
class Param:
    """One searched parameter and its distribution."""

    name: str
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Scalar, ...] = ()

    def suggest(self, trial: Any) -> Scalar:
        """Draw this parameter's value for an Optuna trial."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            assert self.low is not None and self.high is not None  # parse_param sets both for numeric kinds
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_categorical(self.name, list(self.choices))

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        data: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            data["log"] = True
        if self.step is not None:
            data["step"] = self.step
        return data

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.choices)}"
        scale = "log" if self.log else "linear"
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.name} in [{self.low:g}, {self.high:g}] ({self.kind}, {scale}{step})"


@dataclass(frozen=True)
class SearchSpace:
    """The parameters searched for one architecture, and where the space came from."""

    architecture: str
    params: tuple[Param, ...]
    origin: str  # e.g. "suites/multiview.yaml: search.lanmsff", "built-in default"

    def suggest(self, trial: Any) -> dict[str, Scalar]:
        return {param.name: param.suggest(trial) for param in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {param.name: param.to_dict() for param in self.params}

    def names(self) -> list[str]:
        return [param.name for param in self.params]


# --------------------------------------------------------------------------------------------------- names


def searchable_names(architecture: Architecture, base: Recipe | None = None) -> list[str]:
    """Every parameter name a space (or a best.yaml) may use for ``architecture``."""
    base = base or architecture.spec.recipe
    names = [f.name for f in dataclasses.fields(Recipe) if f.name not in _NOT_SEARCHABLE]
    for field_name, cls in NESTED_FIELDS.items():
        names += [f"{field_name}.{f.name}" for f in dataclasses.fields(cls) if f.name != "params"]
    names += [f"schedule.params.{key}" for key in base.schedule.params]
    names += [OPTION_PREFIX + option.name for option in architecture.options]
    return names


def name_problem(name: str, architecture: Architecture, base: Recipe | None = None) -> str | None:
    """Why ``name`` is not a parameter of ``architecture`` (with did-you-mean), or None when it is."""
    base = base or architecture.spec.recipe
    known = searchable_names(architecture, base)
    if name in known or (name.startswith("schedule.params.") and len(name) > len("schedule.params.")):
        return None
    options = [option.name for option in architecture.options]
    if name in options:
        return (f"{name!r} is a variant option of {architecture.name!r}; address it as "
                f"'{OPTION_PREFIX}{name}'")
    if name.startswith(OPTION_PREFIX):
        option = name[len(OPTION_PREFIX):]
        valid = "; ".join(o.describe() for o in architecture.options) or "none"
        return f"architecture {architecture.name!r} has no variant option {option!r}{did_you_mean(option, options)}; " \
               f"its options: {valid}"
    if name in _NOT_SEARCHABLE:
        return f"recipe field {name!r} cannot be searched (it is not a single value); set it in the suite's recipe"
    return (f"unknown parameter {name!r}{did_you_mean(name, known)}: a parameter is a recipe field (lr, weight_decay, "
            f"batch_size, schedule.params.factor, ...) or {OPTION_PREFIX}<variant option> (" +
            ", ".join(OPTION_PREFIX + o for o in options) + ")")


# --------------------------------------------------------------------------------------------------- values


def to_overrides(params: Mapping[str, Any], architecture: Architecture, recipe: Mapping[str, Any],
                 options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(recipe overrides, options)``: a suite entry's ``recipe``/``options`` with ``params`` applied.

    Nested recipe fields (``schedule.params.factor``) replace their whole field, built from the recipe the entry
    resolves to, because suites replace ``schedule`` and ``early_stopping`` as a whole."""
    new_recipe = dict(recipe)
    new_options = dict(options)
    nested: dict[str, dict[str, Any]] = {}
    resolved: Recipe | None = None
    for name, value in params.items():
        if name.startswith(OPTION_PREFIX):
            new_options[name[len(OPTION_PREFIX):]] = value
            continue
        head, _, rest = name.partition(".")
        if not rest:
            new_recipe[head] = value
            continue
        if head not in nested:
            if resolved is None:
                resolved = recipe_with_overrides(architecture.spec.recipe, recipe)
            current = getattr(resolved, head)
            nested[head] = _plain(dataclasses.asdict(current) if current is not None else
                                  dataclasses.asdict(NESTED_FIELDS[head]()))
        node = nested[head]
        *parents, leaf = rest.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    new_recipe.update(nested)
    return new_recipe, new_options


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(inner) for inner in value]
    return value


def value_problems(params: Mapping[str, Any], architecture: Architecture, recipe: Mapping[str, Any],
                   options: Mapping[str, Any]) -> list[Problem]:
    """Problems with giving ``params`` these values, keyed by parameter name (empty: all valid)."""
    problems: list[Problem] = []
    for name, value in params.items():
        try:
            new_recipe, new_options = to_overrides({name: value}, architecture, recipe, options)
        except FbenchError as error:
            problems.append(((name,), str(error)))
            continue
        if name.startswith(OPTION_PREFIX):
            try:
                architecture.resolve_options(new_options)
            except FbenchError as error:
                problems.append(((name,), str(error)))
            continue
        for _, message in recipe_problems(architecture.spec.recipe, new_recipe):
            problems.append(((name,), f"{message} (with {name}={value!r})"))
            break
    return problems


# --------------------------------------------------------------------------------------------------- parsing


def parse_param(name: str, raw: Any, architecture: Architecture, recipe: Mapping[str, Any],
                options: Mapping[str, Any]) -> tuple[Param | None, list[Problem]]:
    """One parameter of a ``search:`` block; problems are keyed relative to the parameter."""
    if isinstance(raw, list):
        raw = {"type": "categorical", "choices": raw}
    if not isinstance(raw, Mapping):
        return None, [((), f"expected a distribution such as {{type: float, low: 1e-4, high: 1e-2, log: true}} "
                           f"or a list of choices (got {type(raw).__name__})")]
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        hint = did_you_mean(kind, PARAM_TYPES) if isinstance(kind, str) else ""
        what = "the distribution type is missing" if kind is None else f"unknown distribution type {kind!r}{hint}"
        return None, [(("type",), f"{what}; use one of {', '.join(PARAM_TYPES)}")]
    problems: list[Problem] = []
    for key in raw:
        if key not in _KEYS[kind]:
            article = "an" if kind == "int" else "a"
            problems.append(((key,), f"unknown key {key!r} for {article} {kind} parameter"
                                     f"{did_you_mean(key, _KEYS[kind])}; valid keys: {', '.join(_KEYS[kind])}"))
    if problems:
        return None, problems
    option = _option(name, architecture)
    if kind == "categorical":
        return _categorical(name, raw, option, architecture, recipe, options)
    return _numeric(name, kind, raw, option, architecture, recipe, options)


def _option(name: str, architecture: Architecture) -> Any:
    if not name.startswith(OPTION_PREFIX):
        return None
    wanted = name[len(OPTION_PREFIX):]
    return next((option for option in architecture.options if option.name == wanted), None)


def _categorical(name: str, raw: Mapping[str, Any], option: Any, architecture: Architecture,
                 recipe: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[Param | None, list[Problem]]:
    choices = raw.get("choices")
    if choices is None and option is not None:
        if option.choices is not None:
            choices = list(option.choices)
        elif option.kind is bool:
            choices = [True, False]
        else:
            return None, [(("choices",), f"variant option {option.name!r} ({option.kind.__name__}) declares no "
                                         f"choices; list them, e.g. choices: [...]")]
    if choices is None:
        return None, [(("choices",), "a categorical parameter needs choices: [...]")]
    if not isinstance(choices, list) or not choices:
        return None, [(("choices",), "choices must be a non-empty list")]
    problems: list[Problem] = []
    for i, choice in enumerate(choices):
        if not isinstance(choice, (bool, int, float, str)) and choice is not None:
            problems.append((("choices", i), f"choices must be numbers, strings, booleans or null (got "
                                             f"{type(choice).__name__})"))
    if len(set(map(repr, choices))) != len(choices):
        problems.append((("choices",), "a choice is listed twice"))
    if problems:
        return None, problems
    for i, choice in enumerate(choices):
        for _, message in value_problems({name: choice}, architecture, recipe, options):
            problems.append((("choices", i), message))
    if problems:
        return None, problems
    return Param(name, "categorical", choices=tuple(choices)), []


def _numeric(name: str, kind: str, raw: Mapping[str, Any], option: Any, architecture: Architecture,
             recipe: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[Param | None, list[Problem]]:
    problems: list[Problem] = []
    bounds: dict[str, float | int] = {}
    for key in ("low", "high", "step"):
        value = raw.get(key)
        if value is None:
            if key != "step":
                problems.append(((key,), f"a {kind} parameter needs {key}"))
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            hint = (f"; write {value.replace('e', '.0e', 1)} (YAML reads a number without a dot before the "
                    f"exponent as text)" if isinstance(value, str) and _looks_numeric(value) else "")
            problems.append(((key,), f"{key} must be a finite number (got {value!r}){hint}"))
        elif kind == "int" and not float(value).is_integer():
            problems.append(((key,), f"{key} of an int parameter must be a whole number (got {value!r})"))
        else:
            bounds[key] = int(value) if kind == "int" else float(value)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        problems.append((("log",), f"log must be true or false (got {log!r})"))
    if problems:
        return None, problems
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    if low > high:
        problems.append((("high",), f"high ({high:g}) is below low ({low:g})"))
    if log and low <= 0:
        problems.append((("low",), f"a log-scale parameter needs low > 0 (got {low:g}); use a linear scale to "
                                   f"include 0"))
    if log and step is not None:
        problems.append((("step",), "step cannot be combined with log: true"))
    if step is not None and step <= 0:
        problems.append((("step",), f"step must be positive (got {step:g})"))
    if option is not None and (option.kind not in (int, float) or (option.kind is int and kind == "float")):
        problems.append((("type",), f"variant option {option.name!r} is a {option.kind.__name__}; search it as "
                                    f"{'a categorical' if option.kind not in (int, float) else 'an int'}"))
    if problems:
        return None, problems
    if not name.startswith(OPTION_PREFIX) and kind == "float":
        current = _recipe_value(name, architecture, recipe)
        if isinstance(current, int) and not isinstance(current, bool):
            problems.append((("type",), f"recipe field {name!r} is an integer; search it with type: int"))
            return None, problems
    for key, value in (("low", low), ("high", high)):
        for _, message in value_problems({name: value}, architecture, recipe, options):
            problems.append(((key,), message))
    if problems:
        return None, problems
    return Param(name, kind, low=low, high=high, log=log, step=step), []


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower() and "." not in text.split("e")[0].lower()


def _recipe_value(name: str, architecture: Architecture, recipe: Mapping[str, Any]) -> Any:
    try:
        node: Any = recipe_with_overrides(architecture.spec.recipe, recipe)
    except FbenchError:
        return None
    for part in name.split("."):
        if node is None:
            return None
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
    return node


def parse_space(raw: Any, architecture: Architecture, recipe: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None, origin: str = "search"
                ) -> tuple[SearchSpace | None, list[Problem]]:
    """A ``{param: distribution}`` mapping for ``architecture`` (with the suite entry's ``recipe`` overrides and
    ``options``), or the problems with it, keyed from the parameter name down."""
    recipe = dict(recipe or {})
    options = dict(options or {})
    if not isinstance(raw, Mapping) or not raw:
        return None, [((), "a search space is a non-empty mapping of parameter names to distributions")]
    try:
        base = recipe_with_overrides(architecture.spec.recipe, recipe)
    except FbenchError:
        base = architecture.spec.recipe
    params: list[Param] = []
    problems: list[Problem] = []
    for name, spec in raw.items():
        if not isinstance(name, str):
            problems.append(((str(name),), "parameter names are text"))
            continue
        wrong = name_problem(name, architecture, base)
        if wrong:
            problems.append(((name,), wrong))
            continue
        param, found = parse_param(name, spec, architecture, recipe, options)
        problems += [((name, *path), message) for path, message in found]
        if param is not None:
            params.append(param)
    if problems:
        return None, problems
    return SearchSpace(architecture.name, tuple(params), origin), []


def default_space(architecture: Architecture, recipe: Mapping[str, Any] | None = None) -> SearchSpace:
    """The built-in space: lr (log, a decade either side of the recipe's), weight_decay (log, 1e-6..1e-2),
    batch_size (half, same, double the recipe's) and every declared boolean or fixed-choice variant option
    that does not change the input."""
    base = recipe_with_overrides(architecture.spec.recipe, recipe or {})
    sizes = sorted({max(1, base.batch_size // 2), base.batch_size, base.batch_size * 2})
    params = [
        Param("lr", "float", low=base.lr / 10, high=min(base.lr * 10, 1.0), log=True),
        Param("weight_decay", "float", low=1e-6, high=1e-2, log=True),
        Param("batch_size", "categorical", choices=tuple(sizes)),
    ]
    for option in architecture.options:
        if option.name in _INPUT_OPTIONS:
            continue
        if option.kind is bool:
            params.append(Param(OPTION_PREFIX + option.name, "categorical", choices=(True, False)))
        elif option.choices is not None:
            params.append(Param(OPTION_PREFIX + option.name, "categorical", choices=tuple(option.choices)))
    return SearchSpace(architecture.name, tuple(params), "built-in default")


def side_file(architecture: Architecture) -> Path | None:
    """``<module>.search.yaml`` beside the module that defines the architecture's factory, if it exists."""
    try:
        module = Path(inspect.getfile(architecture.factory))
    except (TypeError, OSError):
        return None
    path = module.with_name(module.stem + SIDE_FILE_SUFFIX)
    return path if path.is_file() else None


def side_file_space(architecture: Architecture, recipe: Mapping[str, Any], options: Mapping[str, Any]
                    ) -> SearchSpace | None:
    """The space the architecture's module declares beside it, or None. Raises FbenchError when it is bad."""
    path = side_file(architecture)
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FbenchError(f"{path}: cannot read the search space: {error}") from None
    if not isinstance(data, Mapping) or architecture.name not in data:
        return None
    space, problems = parse_space(data[architecture.name], architecture, recipe, options,
                                  origin=f"{path}: {architecture.name}")
    if problems:
        lines = format_problems(str(path), [((architecture.name, *where), message) for where, message in problems])
        raise FbenchError("\n".join(lines))
    return space
