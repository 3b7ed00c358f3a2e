"""Suite files: the schema, YAML loading, ``--set`` overrides and validation errors that name the file and key.

A suite is YAML read with ``yaml.safe_load`` (plain data only: a ``!!python/...`` tag is an error) and checked
in two passes whose problems are reported together:

1. the pydantic models below (``extra="forbid"``): types, ranges and unknown keys, each unknown key with a
   did-you-mean against the field names at its level;
2. semantic checks against the registries: architecture, dataset and perturbation names, variant options
   (``Architecture.resolve_options``), recipe overrides (``Recipe`` fields), condition strings
   (``fbench.perturb.apply.resolve_condition``), split protocols and their parameters, seeds, budgets and labels.

Every problem reads ``FILE: key.path: problem (did you mean 'x'?)``; :class:`SuiteError` carries them all in
``problems``. Loading a suite imports the plugins it names (its ``plugins:`` list) so that their architectures
resolve; nothing else happens at import time of this module.

Relative paths in a suite (``data:``, ``output``, ``reports``) are relative to the working folder, like paths on
the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from fbench.suite.conditions import SUBSET_NAME, SUBSET_PREFIX
from fbench.errors import FbenchError

NAME_PATTERN = r"^[a-z0-9_-]+$"
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
DEFAULT_TRACKING_FILE = "mlflow.db"
MAIN_PROTOCOL = "main"

# Conditions that are not perturbations: the unperturbed test set, and its per-pose breakdown.
SPECIAL_CONDITIONS: dict[str, str] = {
    "clean": "the unperturbed test set (always evaluated)",
    "pose": "per-pose breakdown of clean accuracy (uses the dataset's pose column)",
}


# Built-in budgets, as plain data (validated into Budget models on use).
BUILTIN_BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {"max_folds": 1, "epoch_scale": 1.0, "max_epochs": 2, "min_epochs": 1, "data_fraction": 0.1,
              "seeds": 1, "max_train_images": 512},
    # Sized so that a suite fits about 15 minutes on a 2-core CPU: two folds of the main protocol (an interval),
    # one split per extra view, and a per-cell compute cap under which SCAN-CCI at 224 still trains.
    "quick": {"max_folds": 2, "max_view_folds": 1, "epoch_scale": 0.1, "max_epochs": 2, "min_epochs": 2,
              "data_fraction": 1.0, "seeds": 1, "max_train_images": 400, "max_train_tmacs": 0.4,
              "max_eval_images": 70, "max_val_images": 35},
    "paper": {},
    # `fbench tune`'s default: one fold, one seed, three epochs on 48 training images (before offline
    # augmentation), scored on 140 validation images, so that a short study fits in minutes on an idle
    # 2-core CPU; a demonstration-sized search. Suites
    # redefine it under budgets: {tune: {...}} for a real one (or `fbench tune --budget quick` on a GPU).
    "tune": {"max_folds": 1, "seeds": 1, "max_epochs": 3, "min_epochs": 1, "max_train_images": 48,
             "max_eval_images": 140},
}

# Protocol arguments that come from elsewhere in the suite, not from ``protocol.params``.
_PROTOCOL_ARGS_ELSEWHERE = {
    "table": "the dataset",
    "seed": "the suite's seeds",
    "val_fraction": "protocol.val_fraction",
    "folds": "protocol.folds",
    "fold": "the runner (every fold is run)",
}
# Parameters a protocol declares as required but that the runner can fill in (one split per value).
_PROTOCOL_OPTIONAL = {"leave_one_pose_out": ("pose",)}

Path_ = tuple[str | int, ...]
Problem = tuple[Path_, str]


# --------------------------------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------------------------------- schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(_Model):
    """How much of the recipe to run. Defaults cut nothing (the ``paper`` budget)."""

    max_folds: int | None = Field(None, ge=1, description="at most this many folds (or splits) per protocol; "
                                                          "null: all")
    epoch_scale: float = Field(1.0, gt=0, description="multiply each recipe's epochs by this")
    max_epochs: int | None = Field(None, ge=1, description="cap on epochs after scaling; null: no cap")
    min_epochs: int = Field(1, ge=1, description="floor on epochs after scaling (never above the recipe's)")
    data_fraction: float = Field(1.0, gt=0, le=1, description="fraction of the training images used, in (0, 1]")
    seeds: int | None = Field(None, ge=1, description="at most this many of the suite's seeds; null: all")
    max_train_images: int | None = Field(None, ge=1, description="cap on training images; null: no cap")
    max_view_folds: int | None = Field(None, ge=1, description="at most this many splits per extra view "
                                       "(subject-disjoint, cross-pose...); null: as max_folds")
    max_train_tmacs: float | None = Field(None, gt=0, description="cap on one cell's training compute in tera-"
                                          "MACs (forward MACs x 3 x images x augmentation copies x epochs); "
                                          "costlier architectures then train on fewer images; null: no cap")
    max_eval_images: int | None = Field(None, ge=1, description="cap on test images (and validation images, "
                                        "unless max_val_images is set) per split: a stratified draw fixed by the "
                                        "split, the same for every architecture; null: no cap")
    max_val_images: int | None = Field(None, ge=1, description="cap on validation images per split (model "
                                       "selection, early stopping); null: as max_eval_images")

    @model_validator(mode="after")
    def _epochs_consistent(self) -> Budget:
        if self.max_epochs is not None and self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) is above max_epochs ({self.max_epochs})")
        return self

    def folds(self, folds: int, view: bool = False) -> int:
        """How many of ``folds`` folds to run (``view``: of an extra view's splits)."""
        cap = self.max_view_folds if view and self.max_view_folds is not None else self.max_folds
        return folds if cap is None else min(folds, cap)

    def epochs(self, recipe_epochs: int) -> int:
        """The epochs to train for a recipe that asks for ``recipe_epochs``."""
        epochs = max(1, int(round(recipe_epochs * self.epoch_scale)))
        if self.max_epochs is not None:
            epochs = min(epochs, self.max_epochs)
        return max(epochs, min(self.min_epochs, recipe_epochs))

    def seed_list(self, seeds: Sequence[int]) -> list[int]:
        """The seeds to run, in order."""
        return list(seeds if self.seeds is None else seeds[: self.seeds])

    def train_images(self, available: int) -> int:
        """How many of ``available`` training images to use (at least one)."""
        count = max(1, int(round(available * self.data_fraction))) if available else 0
        return count if self.max_train_images is None else min(count, self.max_train_images)


class ProtocolConfig(_Model):
    """A split protocol (see ``fbench.data.splits``) and its arguments."""

    kind: str = Field("stratified_kfold", description="split protocol: stratified_kfold, subject_kfold, "
                                                      "cross_pose, leave_one_pose_out or official")
    folds: int = Field(10, description="number of folds (k-fold protocols only; ignored by the others)")
    val_fraction: float = Field(0.1, ge=0, le=0.5, description="validation share carved from training (0: none)")
    params: dict[str, Any] = Field(default_factory=dict, description="extra protocol arguments, e.g. "
                                   "{train_poses: [S, HL, HR], test_poses: [FL, FR]} for cross_pose")
    leaky: bool = Field(False, description="true only for a paper's own protocol that selects on the test fold; "
                                           "reports say so")

    @property
    def is_kfold(self) -> bool:
        from fbench.data.splits import KFOLD_PROTOCOLS

        return self.kind in KFOLD_PROTOCOLS

    def split_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``fbench.data.splits.all_folds(table, kind, **kwargs)`` (seed excluded)."""
        kwargs: dict[str, Any] = {"val_fraction": self.val_fraction, **self.params}
        if self.is_kfold:
            kwargs["folds"] = self.folds
        return kwargs


class ViewConfig(ProtocolConfig):
    """An extra protocol evaluated beside the main one."""

    name: str = Field(pattern=NAME_PATTERN, description="the view's name in reports, [a-z0-9_-]+")


def _size_pair(value: Any) -> Any:
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


class ArchitectureConfig(_Model):
    """One architecture of a suite, with its variants and overrides."""

    name: str = Field(min_length=1, description="a registered architecture (timm/<model> allowed)")
    label: str | None = Field(None, min_length=1, description="display name; default: the name (+ variant)")
    variants: list[dict[str, Any]] = Field(default_factory=lambda: [{}], min_length=1,
                                           description="variant option dicts; [{}] = the defaults")
    options: dict[str, Any] = Field(default_factory=dict, description="options applied to every variant")
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = Field(
        None, description="override of the spec's (height, width); one number means a square")
    recipe: dict[str, Any] = Field(default_factory=dict, description="overrides of Recipe fields (epochs, lr, "
                                   "batch_size, optimizer, ...); schedule and early_stopping replace as a whole")
    train_conditions: list[str] | None = Field(None, description="perturbations mixed into training for this "
                                               "entry (e.g. [mask:kind=surgical]); null: the suite's "
                                               "train_conditions")

    # Where tuned parameters applied to this entry came from (fbench.suite.tuned.apply_tuned); None: untuned.
    _tuned: dict[str, Any] | None = PrivateAttr(default=None)

    @field_validator("input_size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return _size_pair(value)

    @property
    def base_label(self) -> str:
        return self.label or self.name

    def variant_label(self, variant: Mapping[str, Any]) -> str:
        return variant_label(self.base_label, variant)


class EngineConfig(_Model):
    """How the engine runs a cell (speed settings; the recipe says what is trained)."""

    amp: bool | Literal["auto"] = Field("auto", description="bf16 autocast: auto (on CUDA only), true or false")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA")
    compile: bool = Field(False, description="torch.compile the model's forward (pays off on long GPU runs)")
    eval_batch_size: int = Field(512, ge=1, description="batch size of validation and test passes")
    residency: Literal["auto", "device", "stream"] = Field("auto", description="training images on the device "
                                                           "(when they fit: auto) or streamed from host memory")

    def non_default(self) -> dict[str, Any]:
        """The settings that differ from the defaults (what a cell's key includes)."""
        return {name: getattr(self, name) for name, info in type(self).model_fields.items()
                if getattr(self, name) != info.default}


class TrackingConfig(_Model):
    """MLflow tracking."""

    enabled: bool = Field(True, description="log cells to MLflow")
    uri: str | None = Field(None, description=f"tracking URI; default sqlite:///{DEFAULT_TRACKING_FILE} in the "
                                              "working folder")
    experiment: str | None = Field(None, description="MLflow experiment; default the suite's name")

    def resolved_uri(self, folder: str | Path | None = None) -> str:
        """The tracking URI: ``uri``, or an absolute sqlite URI for ``mlflow.db`` in ``folder`` (default: cwd)."""
        if self.uri:
            return self.uri
        base = Path(folder) if folder is not None else Path.cwd()
        return "sqlite:///" + (base.resolve() / DEFAULT_TRACKING_FILE).as_posix()


class ResourcesConfig(_Model):
    """What each cell asks of a cluster (``fbench run --executor slurm``); the command line overrides each key.
    Resources never change a cell's key: the same cell gives the same result wherever it runs."""

    partition: str | None = Field(None, description="SLURM partition (default: the cluster's)")
    gpus_per_cell: int | None = Field(None, ge=0, description="GPUs per cell (default 1 on SLURM); more than "
                                      "one runs the cell under torchrun, one process per GPU")
    processes_per_cell: int | None = Field(None, ge=1, description="torchrun processes per cell (default: "
                                           "gpus_per_cell when above 1, else 1; on CPUs they use gloo)")
    cpus_per_cell: int | None = Field(None, ge=1, description="CPU cores per cell (default 8 on SLURM)")
    mem_gb: float | None = Field(None, gt=0, description="memory per cell in GB (default: the partition's)")
    time_min: int | None = Field(None, ge=1, description="time limit per cell job in minutes (default 240); a "
                                 "job stopped at its limit is requeued and the cell starts again")
    max_parallel: int | None = Field(None, ge=1, description="cells running at once (SLURM array "
                                     "parallelism; default 32, 1 for local-jobs)")
    setup: list[str] = Field(default_factory=list, description="shell lines run in each job before the cell, "
                             "e.g. 'module load cuda', 'source .venv/bin/activate'")
    slurm_params: dict[str, Any] = Field(default_factory=dict, description="more sbatch options by name, e.g. "
                                         "{account: proj1, qos: high, constraint: a100}")


class ArchitectureEntry(NamedTuple):
    """One architecture x variant of a suite."""

    label: str
    name: str
    options: dict[str, Any]  # the architecture's ``options`` merged with the variant (variant wins)
    input_size: tuple[int, int] | None
    recipe: dict[str, Any]  # overrides of Recipe fields
    tuned: dict[str, Any] | None = None  # the best.yaml applied (file, study, trial, params), if any
    train_conditions: tuple[str, ...] = ()  # perturbations mixed into training (the entry's, else the suite's)


class Suite(_Model):
    """A benchmark suite: what to train, on what, under which protocol and conditions, with which budget."""

    name: str = Field(pattern=NAME_PATTERN, description="the suite's name, [a-z0-9_-]+")
    description: str = Field("", description="what the suite measures")
    dataset: str = Field("kdef", description="the registered dataset trained and tested on")
    data: dict[str, str] = Field(default_factory=dict, description="dataset locations by name (overridden by "
                                 "--data NAME=PATH; else $FBENCH_DATA_<NAME>)")
    synthetic_fallback: bool = Field(True, description="without a dataset location, run on the synthetic "
                                     "KDEF-like set (built on first use) and say so loudly")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig, description="the main split protocol")
    synthetic_protocol: ProtocolConfig | None = Field(None, description="the main protocol on the synthetic "
                                                      "fallback, when the dataset's own cannot apply (e.g. "
                                                      "official splits, which the synthetic set lacks)")
    views: list[ViewConfig] = Field(default_factory=list, description="extra protocols evaluated beside the "
                                    "main one")
    conditions: list[str] = Field(default_factory=lambda: ["clean"], description="evaluation conditions "
                                  "(clean, pose, or NAME:key=value,...); clean is always included")
    architectures: list[ArchitectureConfig] = Field(min_length=1, description="the architectures compared")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="training seeds")
    budget: str = Field("quick", description="smoke, quick, paper, or a name defined under budgets")
    budgets: dict[str, Budget] = Field(default_factory=dict, description="per-suite overrides of the budget "
                                       "table (only the keys given change)")
    train_conditions: list[str] = Field(default_factory=list, description="perturbations mixed into training "
                                        "and validation: each image is clean or under one of them, in equal "
                                        "shares, fixed per sample (architectures may set their own)")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="engine speed settings: amp, "
                                 "channels_last, compile, eval_batch_size")
    output: str = Field("runs", description="folder for the cell folders")
    reports: str = Field("reports", description="folder for reports")
    plugins: list[str] = Field(default_factory=list, description="plugin modules or .py files to import "
                                                                 "(like --plugin)")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps")
    efficiency_only: bool = Field(False, description="profile only, no training")
    search: dict[str, Any] = Field(default_factory=dict, description="fbench tune's search spaces by "
                                   "architecture name or label: {lanmsff: {lr: {type: float, low: 1e-4, high: "
                                   "1e-2, log: true}, options.pwfs: [true, false]}}")
    tuned_from: str | list[str] | None = Field(None, description="best.yaml file(s) written by fbench tune whose "
                                               "parameters are applied (paths relative to the suite file)")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="cluster resources per cell (partition, GPUs, time, memory, parallelism)")

    _source: str | None = PrivateAttr(default=None)

    @field_validator("conditions")
    @classmethod
    def _clean_first(cls, conditions: list[str]) -> list[str]:
        stripped = [c.strip() for c in conditions]
        return ["clean"] + [c for c in stripped if c != "clean"]

    @property
    def source(self) -> str | None:
        """The file the suite was read from, if any."""
        return self._source

    @property
    def experiment(self) -> str:
        """The MLflow experiment name."""
        return self.tracking.experiment or self.name

    def protocols(self, synthetic_fallback: bool = False) -> list[tuple[str, ProtocolConfig]]:
        """The main protocol (named ``main``) then each view, by name. On the synthetic fallback the main
        protocol is ``synthetic_protocol`` when the suite gives one."""
        main = self.synthetic_protocol if synthetic_fallback and self.synthetic_protocol else self.protocol
        return [(MAIN_PROTOCOL, main), *((view.name, view) for view in self.views)]

    def budget_table(self) -> dict[str, Budget]:
        """Every budget known to the suite: the built-ins with the suite's overrides, then its own."""
        return {name: merge_budget(name, self.budgets.get(name)) for name in {**BUILTIN_BUDGETS, **self.budgets}}

    def effective_budget(self, name: str | None = None) -> Budget:
        """The budget ``name`` (default: the suite's), merged with the suite's overrides."""
        chosen = name or self.budget
        if chosen not in BUILTIN_BUDGETS and chosen not in self.budgets:
            raise FbenchError(_unknown("budget", chosen, [*BUILTIN_BUDGETS, *self.budgets]))
        return merge_budget(chosen, self.budgets.get(chosen))

    def architecture_entries(self) -> list[ArchitectureEntry]:
        """Each architecture x variant, with its unique label and options merged with the variant."""
        return [
            ArchitectureEntry(arch.variant_label(variant), arch.name, {**arch.options, **variant},
                              arch.input_size, dict(arch.recipe), arch._tuned,
                              tuple(self.train_conditions if arch.train_conditions is None
                                    else arch.train_conditions))
            for arch in self.architectures for variant in arch.variants
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars), for hashing and logging."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------------- helpers


def variant_label(base: str, variant: Mapping[str, Any]) -> str:
    """``lanmsff`` + ``{mass_att: false}`` -> ``lanmsff[mass_att=false]``; the default variant keeps ``base``."""
    if not variant:
        return base
    return base + "[" + ",".join(f"{key}={_format_value(value)}" for key, value in variant.items()) + "]"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _hint(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or ''."""
    matches = difflib.get_close_matches(str(name), list(candidates), n=3, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)"


def _unknown(what: str, name: str, candidates: Iterable[str]) -> str:
    known = sorted(dict.fromkeys(candidates))
    return f"unknown {what} {name!r}{_hint(name, known)}; known: {', '.join(known) or 'none'}"


def _path_text(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def merge_budget(name: str, override: Budget | Mapping[str, Any] | None) -> Budget:
    """The built-in budget ``name`` (the paper budget for a suite's own name) with the fields ``override``
    sets. Raises ``pydantic.ValidationError`` when the merge is inconsistent."""
    base = dict(BUILTIN_BUDGETS.get(name, {}))
    if isinstance(override, Budget):
        base.update({key: getattr(override, key) for key in override.model_fields_set})
    elif override:
        base.update(override)
    return Budget.model_validate(base)


def budget_cuts(suite: Suite, budget: str | None = None) -> list[str]:
    """What the suite's budget cuts, in words, for reports: e.g. ``folds 10 → 3``, ``epochs × 0.2 (max 15)``.
    Empty when the budget runs everything as the recipes say."""
    chosen = suite.effective_budget(budget)
    cuts: list[str] = []
    for name, protocol in suite.protocols():
        where = "" if name == MAIN_PROTOCOL else f" ({name})"
        cap = chosen.max_folds
        if name != MAIN_PROTOCOL and chosen.max_view_folds is not None:
            cap = chosen.max_view_folds
        if cap is not None:
            if protocol.is_kfold and cap < protocol.folds:
                cuts.append(f"folds {protocol.folds} → {cap}{where}")
            elif protocol.kind == "leave_one_pose_out" and "pose" not in protocol.params:
                cuts.append(f"pose splits capped at {cap}{where}")
    if chosen.seeds is not None and chosen.seeds < len(suite.seeds):
        cuts.append(f"seeds {len(suite.seeds)} → {chosen.seeds}")
    if chosen.epoch_scale != 1.0 or chosen.max_epochs is not None or chosen.min_epochs > 1:
        bounds = [f"min {chosen.min_epochs}"] if chosen.min_epochs > 1 else []
        if chosen.max_epochs is not None:
            bounds.append(f"max {chosen.max_epochs}")
        if chosen.epoch_scale != 1.0:
            text = f"epochs × {chosen.epoch_scale:g}"
            cuts.append(f"{text} ({', '.join(bounds)})" if bounds else text)
        else:
            cuts.append(f"epochs capped ({', '.join(bounds)})")
    if chosen.data_fraction < 1.0:
        cuts.append(f"training images × {chosen.data_fraction:g}")
    if chosen.max_train_images is not None:
        cuts.append(f"training images capped at {chosen.max_train_images}")
    if chosen.max_train_tmacs is not None:
        cuts.append(f"training compute capped at {chosen.max_train_tmacs:g} TMACs per cell (costlier "
                    "architectures train on fewer images; each cell's count is in the report)")
    val_cap = chosen.max_val_images if chosen.max_val_images is not None else chosen.max_eval_images
    if chosen.max_eval_images is not None:
        cuts.append(f"test images capped at {chosen.max_eval_images} per split (stratified, the same images for "
                    "every architecture)")
    if val_cap is not None:
        cuts.append(f"validation images capped at {val_cap} per split")
    return cuts


# --------------------------------------------------------------------------------------------------- recipes


@functools.lru_cache(maxsize=1)
def _recipe_adapter() -> Any:
    from pydantic import TypeAdapter

    from fbench.contract import Recipe

    return TypeAdapter(Recipe)


def _dataclass_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _recipe_key_problems(overrides: Mapping[str, Any]) -> list[Problem]:
    """Unknown keys in recipe overrides, their nested schedule and early_stopping, and augmentation items."""
    from fbench.contract import Augment, EarlyStopping, Recipe, Schedule

    fields = _dataclass_fields(Recipe)
    problems: list[Problem] = []
    for key, value in overrides.items():
        if key not in fields:
            problems.append(((key,), f"Recipe has no field {key!r}{_hint(key, fields)}; fields: "
                                     f"{', '.join(fields)}"))
            continue
        nested = {"schedule": Schedule, "early_stopping": EarlyStopping}.get(key)
        items = [((key,), value, nested)] if nested else []
        if key == "augmentation" and isinstance(value, list):
            items = [((key, i), item, Augment) for i, item in enumerate(value)]
        for path, item, cls in items:
            if isinstance(item, Mapping):
                known = _dataclass_fields(cls)
                for sub in item:
                    if sub not in known:
                        problems.append(((*path, sub), f"{cls.__name__} has no field {sub!r}{_hint(sub, known)}; "
                                                       f"fields: {', '.join(known)}"))
    return problems


def _recipe_data(base: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
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


def recipe_problems(base: Any, overrides: Mapping[str, Any]) -> list[Problem]:
    """Problems with ``overrides`` of the ``Recipe`` ``base``, as (key path inside the overrides, message)."""
    problems = _recipe_key_problems(overrides)
    if problems:
        return problems
    try:
        _recipe_adapter().validate_python(_recipe_data(base, overrides))
    except ValidationError as error:
        return [(tuple(e["loc"]), _pydantic_message(e)) for e in error.errors()]
    except FbenchError as error:
        return [((), str(error))]
    return []


def recipe_with_overrides(base: Any, overrides: Mapping[str, Any]) -> Any:
    """The ``Recipe`` ``base`` with suite overrides applied (``schedule`` and ``early_stopping`` are replaced as a
    whole; ``schedule: cosine`` and augmentation names are shorthands). Raises FbenchError naming each bad key."""
    problems = recipe_problems(base, overrides)
    if problems:
        raise FbenchError("; ".join(f"recipe.{_path_text(p)}: {m}" if p else f"recipe: {m}" for p, m in problems))
    return _recipe_adapter().validate_python(_recipe_data(base, overrides))


# --------------------------------------------------------------------------------------------------- pydantic


def _model_at(path: Path_) -> type[BaseModel] | None:
    """The model class whose fields are the keys at ``path`` inside a suite, if that place is a model."""
    kind: Any = Suite
    for part in path:
        kind = _unwrap_optional(kind)
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
    kind = _unwrap_optional(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _is_list_at(path: Path_) -> bool:
    """Whether the schema holds a list at ``path`` (a field of a model)."""
    model = _model_at(path[:-1])
    field = model.model_fields.get(str(path[-1])) if model and path else None
    return field is not None and typing.get_origin(_unwrap_optional(field.annotation)) is list


def _unwrap_optional(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return kind


def _pydantic_message(error: Mapping[str, Any]) -> str:
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


_PATTERN_MESSAGES = {
    "name": "a name may hold only lowercase letters, digits, '_' and '-'",
    "device": "unknown device; use auto, cpu, cuda, cuda:N or mps",
}


def _pydantic_problems(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden" and loc:
            model = _model_at(loc[:-1])
            fields = list(model.model_fields) if model else []
            hint = _hint(str(loc[-1]), fields)
            message = f"unknown key {loc[-1]!r}{hint}" + ("" if hint or not fields
                                                         else f"; valid keys: {', '.join(fields)}")
            problems.append((loc, message))
        elif item["type"] == "string_pattern_mismatch" and loc and loc[-1] in _PATTERN_MESSAGES:
            problems.append((loc, f"{_PATTERN_MESSAGES[str(loc[-1])]} (got {item['input']!r})"))
        else:
            problems.append((loc, _pydantic_message(item)))
    return problems


# --------------------------------------------------------------------------------------------------- semantics


def _semantic_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Checks against the registries and across fields, on raw data (whatever pydantic made of it)."""
    problems = _plugin_problems(raw.get("plugins"))
    problems += _dataset_problems(raw)
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
    problems += _search_problems(raw)
    return problems


def _search_problems(raw: Mapping[str, Any]) -> list[Problem]:
    from fbench.suite.tuned import search_problems

    return search_problems(raw)


def _plugin_problems(plugins: Any) -> list[Problem]:
    from fbench.registry import load_plugins

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
    from fbench.registry import DATASETS

    known = DATASETS.names()
    problems: list[Problem] = []
    dataset = raw.get("dataset")
    if isinstance(dataset, str) and dataset not in known:
        problems.append((("dataset",), _unknown("dataset", dataset, known)))
    data = raw.get("data")
    if isinstance(data, Mapping):
        for name in data:
            if isinstance(name, str) and name not in known:
                problems.append((("data", name), _unknown("dataset", name, known)))
    return problems


def _protocol_problems(protocol: Mapping[str, Any], path: Path_) -> list[Problem]:
    from fbench.data.splits import KFOLD_PROTOCOLS, PROTOCOLS

    kind = protocol.get("kind", ProtocolConfig.model_fields["kind"].default)
    if not isinstance(kind, str):
        return []
    if kind not in PROTOCOLS:
        return [((*path, "kind"), _unknown("split protocol", kind, PROTOCOLS))]
    problems: list[Problem] = []
    folds = protocol.get("folds", ProtocolConfig.model_fields["folds"].default)
    if kind in KFOLD_PROTOCOLS and isinstance(folds, int) and not isinstance(folds, bool) and folds < 2:
        problems.append(((*path, "folds"), f"a k-fold protocol needs folds >= 2 (got {folds})"))
    params = protocol.get("params")
    if not isinstance(params, Mapping):
        params = {}
    signature = inspect.signature(PROTOCOLS[kind]).parameters
    accepted = [name for name in signature if name not in _PROTOCOL_ARGS_ELSEWHERE]
    for name in params:
        if name in _PROTOCOL_ARGS_ELSEWHERE:
            problems.append(((*path, "params", name), f"{name!r} is not a protocol parameter here: it comes from "
                                                      f"{_PROTOCOL_ARGS_ELSEWHERE[name]}"))
        elif name not in accepted:
            problems.append(((*path, "params", name),
                             f"split protocol {kind!r} takes no parameter {name!r}{_hint(name, accepted)}; "
                             f"it takes: {', '.join(accepted) or 'none'}"))
    optional = _PROTOCOL_OPTIONAL.get(kind, ())
    for name, parameter in signature.items():
        if (name not in _PROTOCOL_ARGS_ELSEWHERE and name not in optional and name not in params
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


def _condition_problems(conditions: Any, key: str | Path_, allow_special: bool) -> list[Problem]:
    from fbench.perturb.apply import resolve_condition

    if not isinstance(conditions, list):
        return []
    path: Path_ = key if isinstance(key, tuple) else (key,)
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, condition in enumerate(conditions):
        if not isinstance(condition, str):
            continue
        text = condition.strip()
        if text in SPECIAL_CONDITIONS or text.startswith(SUBSET_PREFIX):
            if not allow_special:
                problems.append(((*path, i), f"{text!r} is an evaluation condition, not a training perturbation"))
            elif text.startswith(SUBSET_PREFIX) and not SUBSET_NAME.match(text[len(SUBSET_PREFIX):]):
                problems.append(((*path, i), f"{text!r}: a subset is named by the dataset's cond_<name> column, "
                                             "e.g. subset:occlusion or subset:pose_gt30"))
        else:
            try:
                resolve_condition(text)
            except FbenchError as error:
                problems.append(((*path, i), str(error)))
        if text in seen and text != "clean":
            problems.append(((*path, i), f"condition {text!r} is listed twice"))
        seen.add(text)
    return problems


def _architecture_problems(architectures: Any) -> list[Problem]:
    if not isinstance(architectures, list):
        return []
    problems: list[Problem] = []
    labels: dict[str, Path_] = {}
    for i, entry in enumerate(architectures):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        problems += _one_architecture_problems(entry, ("architectures", i))
        base = entry.get("label") if isinstance(entry.get("label"), str) else entry["name"]
        variants = entry.get("variants", [{}])
        for j, variant in enumerate(variants if isinstance(variants, list) else []):
            if not isinstance(variant, Mapping):
                continue
            label = variant_label(base, variant)
            path: Path_ = ("architectures", i, "variants", j)
            if label in labels:
                problems.append((path, f"label {label!r} is used twice (also at {_path_text(labels[label])}); give "
                                       f"one of them a distinct label"))
            labels.setdefault(label, path)
    return problems


def _one_architecture_problems(entry: Mapping[str, Any], path: Path_) -> list[Problem]:
    from fbench.registry import get_architecture

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
    for j, variant in enumerate(variants if isinstance(variants, list) else []):
        if not isinstance(variant, Mapping):
            continue
        try:
            architecture.resolve_options(variant)
            if options_ok and isinstance(options, Mapping):
                architecture.resolve_options({**options, **variant})
        except FbenchError as error:
            problems.append(((*path, "variants", j), str(error)))
    problems += _condition_problems(entry.get("train_conditions"), (*path, "train_conditions"),
                                    allow_special=False)
    recipe = entry.get("recipe")
    if isinstance(recipe, Mapping):
        problems += [((*path, "recipe", *sub), message)
                     for sub, message in recipe_problems(architecture.spec.recipe, recipe)]
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
        problems.append((("budget",), _unknown("budget", name, known)))
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
            problems += [(("budgets", key), _pydantic_message(e)) for e in error.errors()]
    return problems


# --------------------------------------------------------------------------------------------------- loading


def _format(source: str, problems: Iterable[Problem], notes: Mapping[str, str] | None = None) -> list[str]:
    lines: list[str] = []
    for path, message in problems:
        text = _path_text(path)
        note = ""
        for key, origin in (notes or {}).items():
            if text == key or text.startswith(key + "."):
                note = f" [from {origin}]"
        line = f"{source}: {text}: {message}{note}" if text else f"{source}: {message}{note}"
        if line not in lines:
            lines.append(line)
    return lines


def _document_order(problems: list[Problem], raw: Mapping[str, Any]) -> list[Problem]:
    """Problems sorted by where their top-level key sits in the file (stable within a key)."""
    order = {key: i for i, key in enumerate(raw)}
    return sorted(problems, key=lambda problem: order.get(problem[0][0], len(order)) if problem[0] else -1)


def _read_yaml(path: Path) -> Any:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SuiteError([f"{source}: cannot read the suite file: {error.strerror or error}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as error:
        where = _mark(source, error.problem_mark or error.context_mark)
        problem = str(error.problem)
        if "constructor for the tag" in problem:
            problem += ("; suites are plain data (read with yaml.safe_load), so tags such as !!python/object "
                        "are not allowed")
        detail = f"{error.context}: {problem}" if error.context else problem
        raise SuiteError([f"{where}: YAML error: {detail}"]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise SuiteError([f"{_mark(source, mark)}: YAML syntax error: {detail}"]) from None


def _mark(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def parse_override(item: str) -> tuple[list[str | int], Any]:
    """``"architectures.0.recipe.epochs=5"`` -> ``(["architectures", 0, "recipe", "epochs"], 5)``; the value is
    read as YAML (``true``, ``0.5``, ``[0, 1]``, ``null``, text)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise FbenchError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set architectures.0.recipe.epochs=5")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise FbenchError(f"--set {item!r}: the value is not valid YAML ({getattr(error, 'problem', error)})"
                          ) from None
    path: list[str | int] = [int(part) if _is_index(part) else part.strip() for part in key.split(".")]
    return path, value


def _is_index(part: str) -> bool:
    text = part.strip()
    return text.lstrip("-").isdigit()


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Apply one ``--set KEY.PATH=VALUE`` to the raw suite dict in place; returns the dotted key path.
    Missing mappings on the way are created; list indices must exist."""
    path, value = parse_override(item)
    node: Any = raw
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = _path_text(tuple(path[:depth])) or "the suite"
        if isinstance(node, list):
            if not isinstance(part, int):
                raise FbenchError(f"--set {item!r}: {where} is a list; index it with a number (0..{len(node) - 1})")
            if not -len(node) <= part < len(node):
                raise FbenchError(f"--set {item!r}: {where} has {len(node)} item(s); index {part} is out of range")
        elif isinstance(node, dict):
            if isinstance(part, int) and part not in node:
                part = str(part)
            if not last and not isinstance(node.get(part), (dict, list)):
                here = _path_text(tuple(path[:depth + 1]))
                if node.get(part) is not None:
                    raise FbenchError(f"--set {item!r}: {here} is {type(node[part]).__name__}, not a mapping or "
                                      f"list")
                if isinstance(path[depth + 1], int) or _is_list_at(tuple(path[:depth + 1])):
                    raise FbenchError(f"--set {item!r}: {here} is not in the file, so it has no items to index; "
                                      f"set the whole list, e.g. --set {here}=[...]")
                node[part] = {}
        else:
            raise FbenchError(f"--set {item!r}: {where} is {type(node).__name__}, not a mapping or list")
        if last:
            node[part] = value
        else:
            node = node[part]
    return _path_text(tuple(path))


def suite_from_dict(raw: Any, source: str = "<suite>", overrides: Sequence[str] = (),
                    notes: Mapping[str, str] | None = None) -> Suite:
    """Validate raw suite data (after applying ``--set`` overrides); raises SuiteError listing every problem."""
    if not isinstance(raw, dict):
        what = "empty" if raw is None else f"a {type(raw).__name__}"
        raise SuiteError([f"{source}: a suite is a mapping of keys (name:, architectures:, ...); this one is {what}"])
    notes = dict(notes or {})
    problems: list[str] = []
    for item in overrides:
        try:
            notes[apply_override(raw, item)] = f"--set {item}"
        except FbenchError as error:
            problems.append(f"{source}: {error}")
    suite: Suite | None = None
    found: list[Problem] = []
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as error:
        found += _pydantic_problems(error)
    found += _semantic_problems(raw)
    problems += _format(source, _document_order(found, raw), notes)
    if problems or suite is None:
        raise SuiteError(problems)
    suite._source = source
    return suite


def load_suite(path: str | Path, overrides: Sequence[str] = (), budget: str | None = None,
               only: Sequence[str] | None = None, data: Mapping[str, str] | None = None,
               params: Sequence[str | Path] = ()) -> Suite:
    """Read, override and validate a suite file.

    ``overrides`` are ``--set KEY.PATH=VALUE`` items (applied to the raw data before validation; list indices as
    numbers), ``budget`` replaces the suite's budget, ``data`` (``--data NAME=PATH``) merges into ``data:`` and
    ``only`` keeps the architectures (or single variants) with those names or labels. ``params`` are tuning
    results (``--params best.yaml``), applied after the suite's own ``tuned_from:`` files. Raises SuiteError.
    """
    source = str(path)
    raw = _read_yaml(Path(path))
    notes: dict[str, str] = {}
    if isinstance(raw, dict):
        if budget is not None:
            raw["budget"] = budget
            notes["budget"] = f"--budget {budget}"
        if data:
            if not isinstance(raw.get("data"), dict):
                raw["data"] = {} if raw.get("data") is None else raw["data"]
            if isinstance(raw["data"], dict):
                raw["data"].update(data)
                notes.update({f"data.{name}": f"--data {name}={value}" for name, value in data.items()})
    suite = suite_from_dict(raw, source, overrides, notes)
    suite = _apply_tuned(suite, Path(path), params)
    return select_architectures(suite, only) if only else suite


def _apply_tuned(suite: Suite, path: Path, params: Sequence[str | Path]) -> Suite:
    """The suite with its ``tuned_from:`` files (relative to the suite file) and then ``params`` applied."""
    listed = [suite.tuned_from] if isinstance(suite.tuned_from, str) else list(suite.tuned_from or [])
    files = [path.parent / Path(item).expanduser() for item in listed] + [Path(p) for p in params]
    if not files:
        return suite
    from fbench.suite.tuned import apply_tuned

    return apply_tuned(suite, files)


def select_architectures(suite: Suite, only: Sequence[str]) -> Suite:
    """The suite with only the architectures named (by name or label) or the variants labelled in ``only``."""
    wanted = list(dict.fromkeys(only))
    names = {a.name for a in suite.architectures} | {a.base_label for a in suite.architectures}
    labels = {entry.label for entry in suite.architecture_entries()}
    known = names | labels
    unknown = [w for w in wanted if w not in known]
    if unknown:
        source = suite.source or "<suite>"
        raise SuiteError([f"{source}: --only: {_unknown('architecture name or label', w, known)}" for w in unknown])
    kept: list[ArchitectureConfig] = []
    for arch in suite.architectures:
        if arch.name in wanted or arch.base_label in wanted:
            kept.append(arch)
            continue
        variants = [v for v in arch.variants if arch.variant_label(v) in wanted]
        if variants:
            kept.append(arch.model_copy(update={"variants": variants}))
    selected = suite.model_copy(update={"architectures": kept})
    selected._source = suite.source
    return selected


def validate_suite_file(path: str | Path, overrides: Sequence[str] = (), budget: str | None = None,
                        only: Sequence[str] | None = None, data: Mapping[str, str] | None = None) -> list[str]:
    """Every problem with a suite file (empty: valid), without raising; for ``fbench validate``."""
    try:
        load_suite(path, overrides, budget=budget, only=only, data=data)
    except SuiteError as error:
        return error.problems
    except FbenchError as error:
        return [str(error)]
    return []
