"""The search space a suite tunes an entry over, and tuned parameters (``best.yaml``) fed back into a suite.

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
from typing import Any

import yaml

from fbench.errors import FbenchError, did_you_mean
from fbench.registry import get_architecture
from fbench.suite.problems import SuiteError, format_problems
from fbench.suite.schema import ArchitectureConfig, Suite
from fbench.suite.search import (
    SearchSpace,
    default_space,
    name_problem,
    parse_space,
    side_file_space,
    to_overrides,
    value_problems,
)

TUNED_FORMAT = 1


# --------------------------------------------------------------------------------------------------- search


def space_for(suite: Suite, entry: ArchitectureConfig) -> SearchSpace:
    """The space to tune ``entry`` over: the suite's ``search:`` block for its label or name, else the file
    beside the architecture's module, else the built-in default."""
    architecture = get_architecture(entry.name)
    options = {**entry.options, **(entry.variants[0] if entry.variants else {})}
    for key in (entry.label, entry.name):
        if key and key in suite.search:
            space, problems = parse_space(suite.search[key], architecture, entry.recipe, options,
                                          origin=f"{suite.source or 'suite'}: search.{key}")
            if problems:
                raise SuiteError(format_problems(suite.source or "<suite>",
                                                 [(("search", key, *path), message) for path, message in problems]))
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
    if problems or not isinstance(params, Mapping):
        raise SuiteError(problems)
    trial = data.get("trial")
    return TunedParams(path.resolve(), str(architecture), label, {str(k): v for k, v in params.items()},
                       study=data.get("study"), trial=trial if isinstance(trial, int) else None)


def apply_tuned(suite: Suite, paths: Sequence[str | Path]) -> Suite:
    """``suite`` with each ``best.yaml`` in ``paths`` applied to the entries of its architecture (by label, else
    by name), in order. Raises SuiteError naming the file and parameter."""
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
                              f"suite {suite.name!r}{did_you_mean(tuned.architecture, known)}; the suite has: "
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
            recipe, options = to_overrides(tuned.params, architecture, entry.recipe, entry.options)
            architectures[i] = entry.with_tuned(recipe, options, tuned.provenance())
        if problems:
            raise SuiteError(problems)
        applied.append(source)
    updated_suite = suite.model_copy(update={"architectures": architectures, "tuned_from": applied or None})
    updated_suite.set_source(suite.source)
    return updated_suite
