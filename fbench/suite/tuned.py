"""A suite's search spaces, and tuned parameters (``best.yaml``) fed back into a suite.

``fbench run SUITE --params best.yaml`` and ``tuned_from: best.yaml`` in a suite apply a tuning result to the
suite's entries for that architecture before cells are expanded: recipe fields become recipe overrides, and
``options.*`` become the entry's options (a variant's own setting still wins, so ablation variants stay what
they say). The cells then carry the file, study and trial in their config, so their keys change and reports
say where the configuration came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fbench.errors import FbenchError
from fbench.suite.search import (Problem, SearchSpace, default_space, name_problem, parse_space, side_file_space,
                               value_problems)

if TYPE_CHECKING:
    from fbench.suite.schema import ArchitectureConfig, Suite

TUNED_FORMAT = 1


# --------------------------------------------------------------------------------------------------- search


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
    from fbench.suite.schema import _hint, recipe_problems
    from fbench.registry import get_architecture

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
                                              f"{_hint(str(key), keys)}; the suite has: {', '.join(keys)}"))
            continue
        try:
            architecture = get_architecture(str(entry["name"]))
        except FbenchError:
            continue  # reported at architectures.N.name
        recipe = entry.get("recipe") if isinstance(entry.get("recipe"), Mapping) else {}
        options = entry.get("options") if isinstance(entry.get("options"), Mapping) else {}
        if recipe_problems(architecture.spec.recipe, recipe):
            continue  # reported at the entry's recipe; the space is checked once that is fixed
        try:
            architecture.resolve_options(options)
        except FbenchError:
            continue
        _, found = parse_space(block, architecture, recipe, options)
        problems += [(("search", key, *path), message) for path, message in found]
    return problems


def space_for(suite: Suite, entry: ArchitectureConfig) -> SearchSpace:
    """The space to tune ``entry`` over: the suite's ``search:`` block for its label or name, else the file
    beside the architecture's module, else the built-in default."""
    from fbench.registry import get_architecture

    architecture = get_architecture(entry.name)
    options = {**entry.options, **(entry.variants[0] if entry.variants else {})}
    for key in (entry.label, entry.name):
        if key and key in suite.search:
            space, problems = parse_space(suite.search[key], architecture, entry.recipe, options,
                                          origin=f"{suite.source or 'suite'}: search.{key}")
            if problems:
                from fbench.suite.schema import SuiteError, _format

                raise SuiteError(_format(suite.source or "<suite>", [(("search", key, *p), m) for p, m in problems]))
            assert space is not None
            return space
    return side_file_space(architecture, entry.recipe, options) or default_space(architecture, entry.recipe)


# --------------------------------------------------------------------------------------------------- best.yaml


@dataclass(frozen=True)
class TunedParams:
    """The parameters a tuning study chose, read from its ``best.yaml``."""

    path: Path
    architecture: str
    label: str | None
    params: dict[str, Any]
    study: str | None = None
    trial: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """What a cell records about where its tuned configuration came from."""
        return {"file": str(self.path), "study": self.study, "trial": self.trial, "params": dict(self.params)}


def read_tuned(path: str | Path) -> TunedParams:
    """Read a ``best.yaml`` written by ``fbench tune``. Raises FbenchError naming the file and key."""
    path = Path(path).expanduser()
    source = str(path)
    if not path.is_file():
        raise FbenchError(f"{source}: no such tuning result; run `fbench tune SUITE --arch NAME` first (it writes "
                          f"tune/<study>/best.yaml), or give the path of an existing best.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FbenchError(f"{source}: cannot read the tuning result: {error}") from None
    if not isinstance(data, Mapping):
        raise FbenchError(f"{source}: a tuning result is a mapping with architecture: and params: (see fbench "
                          f"tune's best.yaml)")
    problems = []
    architecture = data.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        problems.append(f"{source}: architecture: required, the name of the tuned architecture")
    params = data.get("params")
    if not isinstance(params, Mapping) or not params:
        problems.append(f"{source}: params: required, a non-empty mapping of parameter names to values")
    label = data.get("label")
    if label is not None and not isinstance(label, str):
        problems.append(f"{source}: label: must be text")
    if problems:
        from fbench.suite.schema import SuiteError

        raise SuiteError(problems)
    trial = data.get("trial")
    return TunedParams(path.resolve(), str(architecture), label, {str(k): v for k, v in params.items()},
                       study=data.get("study"), trial=trial if isinstance(trial, int) else None)


def apply_tuned(suite: Suite, paths: Sequence[str | Path]) -> Suite:
    """``suite`` with each ``best.yaml`` in ``paths`` applied to the entries of its architecture (by label, else
    by name), in order. Raises SuiteError naming the file and parameter."""
    from fbench.suite.schema import SuiteError, _hint
    from fbench.registry import get_architecture

    architectures = list(suite.architectures)
    applied: list[str] = []
    for path in paths:
        tuned = read_tuned(path)
        source = str(tuned.path)
        indices = [i for i, a in enumerate(architectures) if tuned.label and a.base_label == tuned.label]
        indices = indices or [i for i, a in enumerate(architectures) if a.name == tuned.architecture]
        if not indices:
            known = sorted({a.name for a in architectures} | {a.base_label for a in architectures})
            raise SuiteError([f"{source}: architecture: {tuned.architecture!r} (label {tuned.label!r}) is not in "
                              f"suite {suite.name!r}{_hint(tuned.architecture, known)}; the suite has: "
                              f"{', '.join(known)}"])
        problems: list[str] = []
        for i in indices:
            entry = architectures[i]
            architecture = get_architecture(entry.name)
            for name in tuned.params:
                wrong = name_problem(name, architecture)
                if wrong:
                    problems.append(f"{source}: params.{name}: {wrong}")
            if problems:
                break
            problems += [f"{source}: params.{p[0]}: {m}" for p, m in
                         value_problems(tuned.params, architecture, entry.recipe, entry.options)]
            if problems:
                break
            from fbench.suite.search import to_overrides

            recipe, options = to_overrides(tuned.params, architecture, entry.recipe, entry.options)
            updated = entry.model_copy(update={"recipe": recipe, "options": options})
            updated._tuned = tuned.provenance()
            architectures[i] = updated
        if problems:
            raise SuiteError(problems)
        applied.append(source)
    updated_suite = suite.model_copy(update={"architectures": architectures, "tuned_from": applied or None})
    updated_suite._source = suite.source
    return updated_suite
