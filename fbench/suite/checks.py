"""Semantic checks of a suite: its raw data against the registries and across fields.

Pydantic checks types, ranges and unknown keys (:mod:`fbench.suite.schema`); these checks find what it cannot:
architecture, dataset and perturbation names, variant options (``Architecture.resolve_options``), recipe
overrides (``Recipe`` fields), condition strings (``fbench.perturb.apply.resolve_condition``), split protocols and
their parameters, seeds, budgets, labels and search spaces. They run on raw data, whatever pydantic made of it,
so that every problem of a file is reported at once; each is a ``(key path, message)`` pair. Checking a suite
imports the plugins it names (its ``plugins:`` list), so that their architectures resolve.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from fbench.contract import Architecture
from fbench.data.splits import KFOLD_PROTOCOLS, PROTOCOLS
from fbench.errors import FbenchError, did_you_mean
from fbench.perturb.apply import resolve_condition
from fbench.registry import dataset_choices, get_architecture, is_dataset_name, load_plugins
from fbench.suite.conditions import CLEAN, SUBSET_NAME, SUBSET_PREFIX, is_perturbation, is_subset
from fbench.suite.problems import KeyPath, Problem, path_text, pydantic_message, unknown_name
from fbench.suite.recipes import recipe_problems
from fbench.suite.schema import (
    BUILTIN_BUDGETS,
    MAIN_PROTOCOL,
    MAX_INPUT_SIZE,
    SYNTHETIC_SETS,
    Budget,
    ProtocolConfig,
    Suite,
    merge_budget,
    variant_label,
)
from fbench.suite.search import parse_space

# Protocol arguments that come from elsewhere in the suite, not from ``protocol.params``.
PROTOCOL_ARGS_ELSEWHERE = {
    "table": "the dataset",
    "seed": "the suite's seeds",
    "val_fraction": "protocol.val_fraction",
    "folds": "protocol.folds",
    "fold": "the runner (every fold is run)",
}
# Parameters a protocol declares as required but that the runner can fill in (one split per value).
PROTOCOL_OPTIONAL = {"leave_one_pose_out": ("pose",)}
# The channel counts images are cached with (fbench.data.faces.to_channels: grayscale or RGB).
IMAGE_CHANNELS = (1, 3)


def semantic_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Checks against the registries and across fields, on raw data (whatever pydantic made of it)."""
    problems = _plugin_problems(raw.get("plugins"))
    problems += _dataset_problems(raw)
    problems += _cross_problems(raw)
    protocol = raw.get("protocol")
    if isinstance(protocol, Mapping):
        problems += _protocol_problems(protocol, ("protocol",))
    synthetic_protocol = raw.get("synthetic_protocol")
    if isinstance(synthetic_protocol, Mapping):
        problems += _protocol_problems(synthetic_protocol, ("synthetic_protocol",))
    problems += _view_problems(raw.get("views"))
    problems += _condition_problems(raw.get("conditions"), "conditions", allow_special=True)
    problems += _condition_problems(raw.get("train_conditions"), "train_conditions", allow_special=False)
    problems += _architecture_problems(raw.get("architectures"))
    problems += _seed_problems(raw.get("seeds"))
    problems += _budget_problems(raw)
    problems += search_problems(raw)
    return problems


def _plugin_problems(plugins: Any) -> list[Problem]:
    problems: list[Problem] = []
    if not isinstance(plugins, list):
        return problems
    for i, plugin in enumerate(plugins):
        if isinstance(plugin, str):
            try:
                load_plugins([plugin])
            except FbenchError as error:
                problems.append((("plugins", i), str(error)))
    return problems


def _dataset_problems(raw: Mapping[str, Any]) -> list[Problem]:
    known = dataset_choices()
    problems: list[Problem] = []
    dataset = raw.get("dataset")
    if isinstance(dataset, str) and not is_dataset_name(dataset):
        problems.append((("dataset",), unknown_name("dataset", dataset, known)))
    data = raw.get("data")
    if isinstance(data, Mapping):
        for name in data:
            if isinstance(name, str) and not is_dataset_name(name):
                problems.append((("data", name), unknown_name("dataset", name, known)))
    return problems


def _cross_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Unknown dataset names in ``cross:`` (with a suggestion), and views, which a matrix does not run."""
    cross = raw.get("cross")
    if not isinstance(cross, Mapping):
        return []
    known = [*dataset_choices(), *SYNTHETIC_SETS]
    problems: list[Problem] = []
    for side in ("train", "test"):
        names = cross.get(side)
        for i, name in enumerate(names if isinstance(names, list) else []):
            if isinstance(name, str) and name not in SYNTHETIC_SETS and not is_dataset_name(name):
                problems.append((("cross", side, i), unknown_name("dataset", name, known)))
    if raw.get("views"):
        problems.append((("views",), "a cross-dataset suite runs the main protocol on each dataset trained and "
                                     "tested on (the diagonal); remove views: or run them in a suite of their own"))
    return problems


def _protocol_problems(protocol: Mapping[str, Any], path: KeyPath) -> list[Problem]:
    kind = protocol.get("kind", ProtocolConfig.model_fields["kind"].default)
    if not isinstance(kind, str):
        return []
    if kind not in PROTOCOLS:
        return [((*path, "kind"), unknown_name("split protocol", kind, PROTOCOLS))]
    problems: list[Problem] = []
    folds = protocol.get("folds", ProtocolConfig.model_fields["folds"].default)
    if kind in KFOLD_PROTOCOLS and isinstance(folds, int) and not isinstance(folds, bool) and folds < 2:
        problems.append(((*path, "folds"), f"a k-fold protocol needs folds >= 2 (got {folds})"))
    params = protocol.get("params")
    if not isinstance(params, Mapping):
        params = {}
    signature = inspect.signature(PROTOCOLS[kind]).parameters
    accepted = [name for name in signature if name not in PROTOCOL_ARGS_ELSEWHERE]
    for name in params:
        if name in PROTOCOL_ARGS_ELSEWHERE:
            problems.append(((*path, "params", name), f"{name!r} is not a protocol parameter here: it comes from "
                                                      f"{PROTOCOL_ARGS_ELSEWHERE[name]}"))
        elif name not in accepted:
            problems.append(((*path, "params", name),
                             f"split protocol {kind!r} takes no parameter {name!r}{did_you_mean(name, accepted)}; "
                             f"it takes: {', '.join(accepted) or 'none'}"))
    optional = PROTOCOL_OPTIONAL.get(kind, ())
    for name, parameter in signature.items():
        if (name not in PROTOCOL_ARGS_ELSEWHERE and name not in optional and name not in params
                and parameter.default is inspect.Parameter.empty):
            problems.append(((*path, "params"), f"split protocol {kind!r} needs parameter {name!r}"))
    return problems


def _view_problems(views: Any) -> list[Problem]:
    if not isinstance(views, list):
        return []
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, view in enumerate(views):
        if not isinstance(view, Mapping):
            continue
        problems += _protocol_problems(view, ("views", i))
        name = view.get("name")
        if name == MAIN_PROTOCOL:
            problems.append((("views", i, "name"), f"{MAIN_PROTOCOL!r} is the main protocol's name; pick another"))
        elif isinstance(name, str) and name in seen:
            problems.append((("views", i, "name"), f"view name {name!r} is used twice"))
        if isinstance(name, str):
            seen.add(name)
    return problems


def _condition_problems(conditions: Any, key: str | KeyPath, allow_special: bool) -> list[Problem]:
    if not isinstance(conditions, list):
        return []
    path: KeyPath = key if isinstance(key, tuple) else (key,)
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, condition in enumerate(conditions):
        if not isinstance(condition, str):
            continue
        text = condition.strip()
        if not is_perturbation(text):
            if not allow_special:
                problems.append(((*path, i), f"{text!r} is an evaluation condition, not a training perturbation"))
            elif is_subset(text) and not SUBSET_NAME.match(text[len(SUBSET_PREFIX):]):
                problems.append(((*path, i), f"{text!r}: a subset is named by the dataset's cond_<name> column, "
                                             "e.g. subset:occlusion or subset:pose_gt30"))
        else:
            try:
                resolve_condition(text)
            except FbenchError as error:
                problems.append(((*path, i), str(error)))
        if text in seen and text != CLEAN:
            problems.append(((*path, i), f"condition {text!r} is listed twice"))
        seen.add(text)
    return problems


def _architecture_problems(architectures: Any) -> list[Problem]:
    if not isinstance(architectures, list):
        return []
    problems: list[Problem] = []
    labels: dict[str, KeyPath] = {}
    for i, entry in enumerate(architectures):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        problems += _one_architecture_problems(entry, ("architectures", i))
        label_given = entry.get("label")
        base = label_given if isinstance(label_given, str) else entry["name"]
        variants = entry.get("variants", [{}])
        for j, variant in enumerate(variants if isinstance(variants, list) else []):
            if not isinstance(variant, Mapping):
                continue
            label = variant_label(base, variant)
            path: KeyPath = ("architectures", i, "variants", j)
            if label in labels:
                problems.append((path, f"label {label!r} is used twice (also at {path_text(labels[label])}); give "
                                       f"one of them a distinct label"))
            labels.setdefault(label, path)
    return problems


def _one_architecture_problems(entry: Mapping[str, Any], path: KeyPath) -> list[Problem]:
    try:
        architecture = get_architecture(entry["name"])
    except FbenchError as error:
        return [((*path, "name"), str(error))]
    problems: list[Problem] = []
    options = entry.get("options")
    options_ok = True
    if isinstance(options, Mapping):
        try:
            architecture.resolve_options(options)
        except FbenchError as error:
            options_ok = False
            problems.append(((*path, "options"), str(error)))
    variants = entry.get("variants")
    shared = options if options_ok and isinstance(options, Mapping) else {}
    for j, variant in enumerate(variants if isinstance(variants, list) else []):
        if not isinstance(variant, Mapping):
            continue
        try:
            architecture.resolve_options(variant)
            if options_ok and isinstance(options, Mapping):
                architecture.resolve_options({**options, **variant})
        except FbenchError as error:
            problems.append(((*path, "variants", j), str(error)))
            continue
        problems += [((*path, "variants", j), message) for message in _input_problems(architecture, {**shared,
                                                                                                     **variant})]
    if options_ok and not isinstance(variants, list):
        problems += [((*path, "options"), message) for message in _input_problems(architecture, shared)]
    problems += _condition_problems(entry.get("train_conditions"), (*path, "train_conditions"),
                                    allow_special=False)
    recipe = entry.get("recipe")
    if isinstance(recipe, Mapping):
        problems += [((*path, "recipe", *sub), message)
                     for sub, message in recipe_problems(architecture.spec.recipe, recipe)]
    return problems


def _input_problems(architecture: Architecture, options: Mapping[str, Any]) -> list[str]:
    """What the run would trip on in the input the options ask for (``in_chans``, ``img_size``): images are cached
    with 1 or 3 channels (``fbench.data.faces.to_channels``), and a side above MAX_INPUT_SIZE fails allocating.
    timm itself takes any ``in_chans`` of at least 1 (it builds the first convolution for it and adapts pretrained
    weights to it), so the channel limit is fbench's, the same for every architecture."""
    try:
        channels, height, width = architecture.resolve_spec(options).input_size
    except (FbenchError, TypeError, ValueError):
        return []  # reported by resolve_options
    problems = []
    if channels not in IMAGE_CHANNELS:
        problems.append(f"the model takes {channels}-channel images (in_chans or its spec), but images are read "
                        f"with {' or '.join(map(str, IMAGE_CHANNELS))} channels (grayscale or RGB); use in_chans: "
                        "1 or 3")
    if max(height, width) > MAX_INPUT_SIZE:
        problems.append(f"an input of {height} x {width} pixels is too large: each side is at most "
                        f"{MAX_INPUT_SIZE} (set img_size or input_size lower)")
    return problems


def _seed_problems(seeds: Any) -> list[Problem]:
    if not isinstance(seeds, list):
        return []
    problems: list[Problem] = []
    seen: set[Any] = set()
    for i, seed in enumerate(seeds):
        if isinstance(seed, int) and not isinstance(seed, bool):
            if seed < 0:
                problems.append((("seeds", i), f"seeds must be non-negative integers (got {seed})"))
            if seed in seen:
                problems.append((("seeds", i), f"seed {seed} is listed twice"))
            seen.add(seed)
    return problems


def _budget_problems(raw: Mapping[str, Any]) -> list[Problem]:
    budgets = raw.get("budgets")
    budgets = budgets if isinstance(budgets, Mapping) else {}
    problems: list[Problem] = []
    name = raw.get("budget", Suite.model_fields["budget"].default)
    known = [*BUILTIN_BUDGETS, *(b for b in budgets if isinstance(b, str))]
    if isinstance(name, str) and name not in known:
        problems.append((("budget",), unknown_name("budget", name, known)))
    for key, override in budgets.items():
        if not isinstance(override, Mapping):
            continue
        try:
            Budget.model_validate(override)
        except ValidationError:
            continue  # pydantic reports it at its own key
        try:
            merge_budget(str(key), override)
        except ValidationError as error:
            problems += [(("budgets", key), pydantic_message(e)) for e in error.errors()]
    return problems


def _matching_entry(entries: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
    """The suite entry (raw) a ``search:`` key names: by label first, then by architecture name."""
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("label") == key:
            return entry
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == key:
            return entry
    return None


def search_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Problems with a raw suite's ``search:`` block, keyed from ``search`` down (for ``fbench validate``)."""
    search = raw.get("search")
    entries = raw.get("architectures")
    if not isinstance(search, Mapping) or not isinstance(entries, list):
        return []
    problems: list[Problem] = []
    keys = [str(e[k]) for e in entries if isinstance(e, Mapping) for k in ("label", "name") if e.get(k)]
    for key, block in search.items():
        entry = _matching_entry(entries, str(key))
        if entry is None:
            problems.append((("search", key), f"no architecture of the suite is named or labelled {key!r}"
                                              f"{did_you_mean(key, keys)}; the suite has: {', '.join(keys)}"))
            continue
        try:
            architecture = get_architecture(str(entry["name"]))
        except FbenchError:
            continue  # reported at architectures.N.name
        recipe = entry.get("recipe")
        recipe = recipe if isinstance(recipe, Mapping) else {}
        options = entry.get("options")
        options = options if isinstance(options, Mapping) else {}
        if recipe_problems(architecture.spec.recipe, recipe):
            continue  # reported at the entry's recipe; the space is checked once that is fixed
        try:
            architecture.resolve_options(options)
        except FbenchError:
            continue
        _, found = parse_space(block, architecture, recipe, options)
        problems += [(("search", key, *path), message) for path, message in found]
    return problems
