"""Cells: a suite expanded into architecture x variant x protocol fold x seed, each a pure function of its config.

A cell's key is a hash of its resolved configuration (architecture, options, input, recipe after the budget,
dataset and its location, protocol and fold, seed, conditions). The same suite run again finds the same keys, so
finished cells are reused; change anything that matters and the key changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fbench.suite.conditions import SUBSET_PREFIX
from fbench.suite.schema import MAIN_PROTOCOL, Suite, recipe_with_overrides
from fbench.contract import Recipe
from fbench.registry import get_architecture

CELL_FORMAT = 1
SPECIAL_CONDITIONS = ("clean", "pose")
_OPTIONAL_FIELDS = ("max_train_tmacs", "max_eval_images", "max_val_images", "engine")


@dataclass(frozen=True)
class Cell:
    suite: str
    label: str  # the architecture x variant's display name
    architecture: str
    options: dict[str, Any]  # every variant option, defaults filled in
    input_size: tuple[int, int, int]
    recipe: dict[str, Any]  # the Recipe after suite overrides and the budget's epochs
    dataset: str
    dataset_root: str
    synthetic: bool
    view: str  # "main" or a view's name
    protocol: dict[str, Any]  # kind, arguments and split seed
    fold: int
    folds: int
    seed: int
    conditions: tuple[str, ...]  # evaluation conditions (clean first; "pose" is a breakdown, not a perturbation)
    train_conditions: tuple[str, ...]
    max_train_images: int | None
    data_fraction: float
    max_train_tmacs: float | None = None
    max_eval_images: int | None = None
    max_val_images: int | None = None
    engine: dict[str, Any] = field(default_factory=dict)  # engine settings that differ from the defaults
    leaky: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # Fields added after format 1 are left out when unset, so existing cells keep their keys.
        for name in _OPTIONAL_FIELDS:
            if data[name] in (None, {}):
                del data[name]
        data["format"] = CELL_FORMAT
        return data

    @property
    def key(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """A readable name: label, view, fold and seed."""
        view = "" if self.view == "main" else f"/{self.view}"
        return f"{self.label}{view}/fold{self.fold}/seed{self.seed}"

    def recipe_object(self) -> Recipe:
        return recipe_with_overrides(get_architecture(self.architecture).spec.recipe, self.recipe)

    @property
    def perturbations(self) -> tuple[str, ...]:
        """The conditions that perturb images (every condition but clean and the pose breakdown)."""
        return tuple(c for c in self.conditions if c not in SPECIAL_CONDITIONS and not c.startswith(SUBSET_PREFIX))

    @property
    def subsets(self) -> tuple[str, ...]:
        """The ``subset:NAME`` conditions: breakdowns of clean predictions by the dataset's ``cond_NAME`` tags."""
        return tuple(c for c in self.conditions if c.startswith(SUBSET_PREFIX))


def protocol_arguments(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The protocol as stored in a cell: its kind and every argument of ``all_folds``, the split seed included
    (0 unless the suite sets one: the folds stay the same across training seeds, so runs are paired)."""
    return {"kind": kind, "arguments": {**arguments, "seed": int(arguments.get("seed", 0))}}


def _recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(recipe), default=list))


def expand_cells(suite: Suite, dataset_root: str, synthetic: bool, split_counts: dict[str, int],
                 budget_name: str | None = None, fallback: bool = False) -> list[Cell]:
    """Every cell of ``suite``, in run order: protocol, fold, architecture x variant, seed.

    ``split_counts`` gives the number of splits each protocol (by view name) yields on the dataset."""
    budget = suite.effective_budget(budget_name)
    seeds = budget.seed_list(suite.seeds)
    cells = []
    for view, protocol in suite.protocols(synthetic_fallback=fallback):
        folds = budget.folds(split_counts[view], view=view != MAIN_PROTOCOL)
        for fold in range(folds):
            for entry in suite.architecture_entries():
                architecture = get_architecture(entry.name)
                options = architecture.resolve_options(entry.options)
                spec = architecture.resolve_spec(options)
                size = spec.input_size if entry.input_size is None else (spec.channels, *entry.input_size)
                recipe = recipe_with_overrides(architecture.spec.recipe, entry.recipe)
                recipe = dataclasses.replace(recipe, epochs=budget.epochs(recipe.epochs))
                for seed in seeds:
                    cells.append(Cell(
                        suite=suite.name, label=entry.label, architecture=entry.name, options=options,
                        input_size=tuple(size), recipe=_recipe_dict(recipe), dataset="kdef" if fallback else suite.dataset,
                        dataset_root=dataset_root, synthetic=synthetic, view=view,
                        protocol=protocol_arguments(protocol.kind, protocol.split_kwargs()),
                        fold=fold, folds=split_counts[view], seed=seed, conditions=tuple(suite.conditions),
                        train_conditions=tuple(c.strip() for c in entry.train_conditions),
                        max_train_images=budget.max_train_images, data_fraction=budget.data_fraction,
                        max_train_tmacs=budget.max_train_tmacs, max_eval_images=budget.max_eval_images,
                        max_val_images=budget.max_val_images,
                        engine=suite.engine.non_default(),
                        leaky=protocol.leaky,
                        extra={"tuned_from": entry.tuned} if entry.tuned else {},
                    ))
    return cells
