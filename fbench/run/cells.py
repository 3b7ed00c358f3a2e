"""Cells: a suite expanded into architecture x variant x protocol fold x seed, each a pure function of its config.

A cell is typed: it carries the recipe (after the suite's overrides and the budget's epochs), the engine settings
and the budget's image caps as objects, and turns them into plain data only for its folder's ``config.json`` and
its key. The key is a hash of that plain data (architecture, options, input, recipe, the dataset's name and
content fingerprint, protocol and fold, seed, conditions, caps) without the dataset's location: the same suite run
again, from a copy of the project or on a node that mounts the data elsewhere, finds the same keys, so finished
cells are reused; change anything that matters and the key changes.

Format 1 keys (before the fingerprint) hashed the dataset's absolute path; :attr:`Cell.format1_key` recomputes
them, so that :func:`fbench.run.suite.adopt_format1_folders` moves such folders to their new keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fbench.contract import Recipe
from fbench.registry import get_architecture
from fbench.run.plan import Plan
from fbench.suite.conditions import perturbations, subsets
from fbench.suite.recipes import recipe_with_overrides
from fbench.suite.schema import MAIN_PROTOCOL, ArchitectureEntry, Budget, EngineConfig, Suite

CELL_FORMAT = 2
# Caps added after format 1 was written: left out of the stored form when unset (as format 1 did).
_OPTIONAL_CAPS = ("max_train_tmacs", "max_eval_images", "max_val_images")
# What the key leaves out of the stored form: where the data lives is not what the cell computes.
_NOT_KEYED = ("dataset_root",)


@dataclass(frozen=True)
class ImageCaps:
    """The budget's cuts that reach one cell: how many images it trains, validates and tests on."""

    data_fraction: float = 1.0
    max_train_images: int | None = None
    max_train_tmacs: float | None = None  # training compute cap (tera-MACs); costlier models train on fewer images
    max_eval_images: int | None = None
    max_val_images: int | None = None  # None: as max_eval_images

    @classmethod
    def from_budget(cls, budget: Budget) -> ImageCaps:
        return cls(budget.data_fraction, budget.max_train_images, budget.max_train_tmacs, budget.max_eval_images,
                   budget.max_val_images)

    def train_images(self, available: int) -> int:
        """How many of ``available`` training images to use (at least one) before the compute cap."""
        count = max(1, int(round(available * self.data_fraction))) if available else 0
        return count if self.max_train_images is None else min(count, self.max_train_images)

    def eval_cap(self, part: str) -> int | None:
        """The cap on the validation (``"val"``) or test part; None: no cap."""
        if part == "val" and self.max_val_images is not None:
            return self.max_val_images
        return self.max_eval_images


@dataclass(frozen=True)
class Cell:
    suite: str
    label: str  # the architecture x variant's display name
    architecture: str
    options: dict[str, Any]  # every variant option, defaults filled in
    input_size: tuple[int, int, int]
    recipe: Recipe  # after suite overrides and the budget's epochs
    dataset: str
    dataset_root: str
    synthetic: bool
    view: str  # "main" or a view's name
    protocol: dict[str, Any]  # kind, arguments and split seed
    fold: int
    folds: int
    seed: int
    conditions: tuple[str, ...]  # evaluation conditions (clean first; "pose" is a breakdown, not a perturbation)
    train_conditions: tuple[str, ...] = ()
    caps: ImageCaps = field(default_factory=ImageCaps)
    engine: EngineConfig = field(default_factory=EngineConfig)
    leaky: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    dataset_fingerprint: str = ""  # SampleTable.fingerprint(): the dataset's content, wherever it lives

    def to_dict(self) -> dict[str, Any]:
        """Plain data: what ``config.json`` stores and the key hashes."""
        data: dict[str, Any] = {
            "suite": self.suite, "label": self.label, "architecture": self.architecture,
            "options": dict(self.options), "input_size": list(self.input_size), "recipe": recipe_dict(self.recipe),
            "dataset": self.dataset, "dataset_root": self.dataset_root, "synthetic": self.synthetic,
            "view": self.view, "protocol": self.protocol, "fold": self.fold, "folds": self.folds, "seed": self.seed,
            "conditions": list(self.conditions), "train_conditions": list(self.train_conditions),
            "max_train_images": self.caps.max_train_images, "data_fraction": self.caps.data_fraction,
            "leaky": self.leaky, "extra": dict(self.extra), "dataset_fingerprint": self.dataset_fingerprint,
            "format": CELL_FORMAT,
        }
        for name in _OPTIONAL_CAPS:
            if getattr(self.caps, name) is not None:
                data[name] = getattr(self.caps, name)
        engine = self.engine.non_default()
        if engine:
            data["engine"] = engine
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        """The cell that :meth:`to_dict` stored (a cell folder's ``config.json``)."""
        base = get_architecture(data["architecture"]).spec.recipe
        return cls(
            suite=data["suite"], label=data["label"], architecture=data["architecture"], options=dict(data["options"]),
            input_size=tuple(data["input_size"]), recipe=recipe_with_overrides(base, data["recipe"]),
            dataset=data["dataset"], dataset_root=data["dataset_root"], synthetic=data["synthetic"],
            view=data["view"], protocol=data["protocol"], fold=data["fold"], folds=data["folds"], seed=data["seed"],
            conditions=tuple(data["conditions"]), train_conditions=tuple(data["train_conditions"]),
            caps=ImageCaps(data["data_fraction"], data["max_train_images"], *(data.get(n) for n in _OPTIONAL_CAPS)),
            engine=EngineConfig(**data.get("engine", {})), leaky=data.get("leaky", False),
            extra=dict(data.get("extra", {})), dataset_fingerprint=data.get("dataset_fingerprint", ""))

    @property
    def key(self) -> str:
        """The folder name: a hash of :meth:`to_dict` without the dataset's location."""
        keyed = {name: value for name, value in self.to_dict().items() if name not in _NOT_KEYED}
        return _hash(keyed)

    @property
    def format1_key(self) -> str:
        """The key this cell had in format 1: the dataset's absolute path in, no fingerprint."""
        data = self.to_dict()
        del data["dataset_fingerprint"]
        return _hash({**data, "format": 1})

    @property
    def name(self) -> str:
        """A readable name: label, view, fold and seed."""
        view = "" if self.view == MAIN_PROTOCOL else f"/{self.view}"
        return f"{self.label}{view}/fold{self.fold}/seed{self.seed}"

    @property
    def split_seed(self) -> int:
        """The seed of the split and of the budget's cuts (the same for every architecture and training seed)."""
        return int(self.protocol["arguments"]["seed"])

    @property
    def perturbations(self) -> tuple[str, ...]:
        """The conditions that perturb images (every condition but clean, the pose breakdown and subsets)."""
        return perturbations(self.conditions)

    @property
    def subsets(self) -> tuple[str, ...]:
        """The ``subset:NAME`` conditions: breakdowns of clean predictions by the dataset's ``cond_NAME`` tags."""
        return subsets(self.conditions)


def _hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """A recipe as plain JSON data (tuples as lists)."""
    plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(recipe), default=list))
    return plain


def protocol_arguments(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The protocol as stored in a cell: its kind and every argument of ``all_folds``, the split seed included
    (0 unless the suite sets one: the folds stay the same across training seeds, so runs are paired)."""
    return {"kind": kind, "arguments": {**arguments, "seed": int(arguments.get("seed", 0))}}


def entry_setup(entry: ArchitectureEntry, budget: Budget) -> tuple[dict[str, Any], tuple[int, int, int], Recipe]:
    """An architecture x variant's options (defaults filled in), input size and recipe (the suite's overrides,
    the budget's epochs)."""
    architecture = get_architecture(entry.name)
    options = architecture.resolve_options(entry.options)
    spec = architecture.resolve_spec(options)
    size = spec.input_size if entry.input_size is None else (spec.channels, *entry.input_size)
    recipe = recipe_with_overrides(architecture.spec.recipe, entry.recipe)
    recipe = dataclasses.replace(recipe, epochs=budget.epochs(recipe.epochs))
    return options, (int(size[0]), int(size[1]), int(size[2])), recipe


def expand_cells(suite: Suite, dataset_root: str, synthetic: bool, split_counts: dict[str, int],
                 budget_name: str | None = None, fallback: bool = False, dataset_fingerprint: str = "",
                 plan: Plan | None = None) -> list[Cell]:
    """Every cell of ``suite``, in run order: protocol, fold, architecture x variant, seed.

    ``split_counts`` gives the number of splits each protocol (by view name) yields on the dataset;
    ``dataset_fingerprint`` is its :meth:`~fbench.data.table.SampleTable.fingerprint`. Under a time-planned
    budget, ``plan`` sets each architecture x view's epochs and training-image cap, and a budget-limited one gets
    no cells."""
    budget = suite.effective_budget(budget_name)
    seeds = budget.seed_list(suite.seeds)
    caps = ImageCaps.from_budget(budget)
    cells = []
    for view, protocol in suite.protocols(synthetic_fallback=fallback):
        folds = budget.folds(split_counts[view], view=view != MAIN_PROTOCOL)
        for fold in range(folds):
            for entry in suite.architecture_entries():
                options, size, recipe = entry_setup(entry, budget)
                cell_caps = caps
                planned = plan.entry(entry.label, view) if plan is not None else None
                if planned is not None:
                    if planned.is_limited:
                        continue
                    recipe = dataclasses.replace(recipe, epochs=planned.epochs)
                    if planned.train_images < planned.available_images:
                        cell_caps = dataclasses.replace(caps, max_train_images=planned.train_images)
                for seed in seeds:
                    cells.append(Cell(
                        suite=suite.name, label=entry.label, architecture=entry.name, options=options,
                        input_size=size, recipe=recipe,
                        dataset="kdef" if fallback else suite.dataset, dataset_root=dataset_root,
                        synthetic=synthetic, view=view,
                        protocol=protocol_arguments(protocol.kind, protocol.split_kwargs()),
                        fold=fold, folds=split_counts[view], seed=seed, conditions=tuple(suite.conditions),
                        train_conditions=tuple(c.strip() for c in entry.train_conditions), caps=cell_caps,
                        engine=suite.engine, leaky=protocol.leaky,
                        extra={"tuned_from": entry.tuned} if entry.tuned else {},
                        dataset_fingerprint=dataset_fingerprint,
                    ))
    return cells
