"""The suite's schema: pydantic models of a suite file, the built-in budgets and what a budget cuts, in words.

The models check types, ranges and unknown keys (``extra="forbid"``); the checks against the registries are in
:mod:`fbench.suite.checks`, and reading a file (YAML, ``--set``, tuned parameters) in :mod:`fbench.suite.load`.
Relative paths in a suite (``data:``, ``output``, ``reports``) are relative to the working folder, like paths on
the command line.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from fbench.data.splits import KFOLD_PROTOCOLS
from fbench.errors import FbenchError
from fbench.suite.conditions import CLEAN, clean_first
from fbench.suite.problems import unknown_name

NAME_PATTERN = r"^[a-z0-9_-]+$"
# Names become folder and file names (runs/<suite>/..., reports/<suite>-...): well under any filesystem's limit.
MAX_NAME_LENGTH = 64
# Largest image side a suite may ask for (input_size, img_size): beyond it a run fails allocating, not learning.
MAX_INPUT_SIZE = 4096
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
DEFAULT_TRACKING_FILE = "mlflow.db"
MAIN_PROTOCOL = "main"
# What the terminal, reports and MLflow tags say wherever numbers of a leaky protocol appear.
LEAKY_LABEL = "leaky: model selection on the test fold"
# The synthetic sets a cross-dataset matrix may name beside registered datasets: rendered on first use, the
# target with another seed and a hard side light (fbench.run.cross); also the stand-ins when no real location
# is given.
SYNTHETIC_SOURCE = "synthetic-source"
SYNTHETIC_TARGET = "synthetic-target"
SYNTHETIC_SETS = (SYNTHETIC_SOURCE, SYNTHETIC_TARGET)

# Built-in budgets, as plain data (validated into Budget models on use).
BUILTIN_BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {"max_folds": 1, "epoch_scale": 1.0, "max_epochs": 2, "min_epochs": 1, "data_fraction": 0.1,
              "seeds": 1, "max_train_images": 512},
    # Time-planned, so that a suite fits the device it runs on: one fold of the main protocol scored on its
    # whole test part (paired tests over every test image), one split per extra view at about a quarter of the
    # time, and about 100 s per main cell. A throughput probe sets each architecture's epochs (up to 40) and,
    # where 3 epochs of the whole training part would overrun, its training images; one that could then see
    # fewer than 700 images (100 per class) is budget-limited on this device (named, not ranked). On a 2-core
    # CPU the multiview suite takes about 12 minutes; on a GPU every cell reaches max_epochs sooner.
    "quick": {"max_folds": 1, "max_view_folds": 1, "seeds": 1, "cell_seconds": 100.0, "view_time_fraction": 0.27,
              "min_epochs": 3, "max_epochs": 40, "min_train_images": 700, "max_val_images": 140},
    "paper": {},
    # `fbench tune`'s default: one fold, one seed, three epochs on 48 training images (before offline
    # augmentation), scored on 140 validation images, so that a short study fits in minutes on an idle
    # 2-core CPU; a demonstration-sized search. Suites
    # redefine it under budgets: {tune: {...}} for a real one (or `fbench tune --budget quick` on a GPU).
    "tune": {"max_folds": 1, "seeds": 1, "max_epochs": 3, "min_epochs": 1, "max_train_images": 48,
             "max_eval_images": 140},
}


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

    cell_seconds: float | None = Field(None, gt=0, description="time-planned budget: about this many seconds of "
                                       "training and evaluation per main-protocol cell on the device the run uses; "
                                       "a short throughput probe per architecture sets its epochs (up to "
                                       "max_epochs) and, where even min_epochs would overrun, its training "
                                       "images; null: no time planning")
    view_time_fraction: float = Field(1.0, gt=0, le=1, description="an extra view's cell gets this share of "
                                      "cell_seconds")
    min_train_images: int | None = Field(None, ge=1, description="with cell_seconds: an architecture that could "
                                         "train min_epochs on fewer images than this within the time is "
                                         "'budget-limited on this device' (not trained, not ranked)")

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
    leaky: bool = Field(False, description="true only for a paper's own protocol that selects on the test fold: "
                                           "the validation part is then the test part (early stopping, "
                                           "ReduceLROnPlateau, best epoch) and training keeps every other "
                                           "image; the terminal, reports and MLflow tags say so")

    @property
    def is_kfold(self) -> bool:
        return self.kind in KFOLD_PROTOCOLS

    def split_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``fbench.data.splits.all_folds(table, kind, **kwargs)`` (seed excluded)."""
        kwargs: dict[str, Any] = {"val_fraction": self.val_fraction, **self.params}
        if self.is_kfold:
            kwargs["folds"] = self.folds
        return kwargs


class ViewConfig(ProtocolConfig):
    """An extra protocol evaluated beside the main one."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH,
                      description=f"the view's name in reports, [a-z0-9_-]+, at most {MAX_NAME_LENGTH} characters")


class CrossConfig(_Model):
    """A trained-on x tested-on matrix: each training dataset's model scored on every test dataset."""

    train: list[str] = Field(min_length=1, description="datasets trained on (registered names, or "
                             f"{' / '.join(SYNTHETIC_SETS)}): each on its own training part, or all of it when it "
                             "is not also tested on")
    test: list[str] = Field(min_length=1, description="datasets tested on: the official test split where one "
                            "exists, else the whole set; a dataset also trained on is tested on its own protocol's "
                            "test part (the diagonal)")

    @field_validator("train", "test")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed twice; name each dataset once")
        return names


def _size_pair(value: Any) -> Any:
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


class ArchitectureConfig(_Model):
    """One architecture of a suite, with its variants and overrides."""

    name: str = Field(min_length=1, description="a registered architecture (timm/<model> allowed)")
    label: str | None = Field(None, min_length=1, description="display name; default: the name (+ variant)")
    variants: list[dict[str, Any]] = Field(default_factory=lambda: [dict[str, Any]()], min_length=1,
                                           description="variant option dicts; [{}] = the defaults")
    options: dict[str, Any] = Field(default_factory=dict, description="options applied to every variant")
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = Field(
        None, description=f"override of the spec's (height, width), each at most {MAX_INPUT_SIZE}; one number "
                          "means a square")
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

    @field_validator("input_size")
    @classmethod
    def _bounded(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and max(value) > MAX_INPUT_SIZE:
            raise ValueError(f"{value[0]} x {value[1]} pixels is too large: each side is at most {MAX_INPUT_SIZE} "
                             "(face images are typically 48 to 448)")
        return value

    @property
    def tuned(self) -> dict[str, Any] | None:
        """Where the tuned parameters applied to this entry came from (file, study, trial, params); None: untuned."""
        return self._tuned

    def with_tuned(self, recipe: Mapping[str, Any], options: Mapping[str, Any],
                   provenance: Mapping[str, Any]) -> ArchitectureConfig:
        """A copy with tuned ``recipe`` overrides and ``options``, recording where they came from."""
        updated = self.model_copy(update={"recipe": dict(recipe), "options": dict(options)})
        updated._tuned = dict(provenance)
        return updated

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

    @field_validator("partition", "setup", "slurm_params")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        for text in _texts(value):
            problem = control_character_problem(text, "a SLURM value")
            if problem:
                raise ValueError(problem)
        return value


def _texts(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [str(key) for key in value] + [text for item in value.values() for text in _texts(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    return [value] if isinstance(value, str) else []


def control_character_problem(text: str, what: str) -> str | None:
    """What is wrong when ``text`` holds a newline or another control character (None: nothing): in a SLURM
    value one would add a line (an ``#SBATCH`` option or a command) to the job script."""
    bad = sorted({char for char in text if unicodedata.category(char) == "Cc"})
    if not bad:
        return None
    return (f"{what} may not hold control characters such as a newline (found "
            f"{', '.join(repr(char) for char in bad)}); write it on one line")


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

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH,
                      description=f"the suite's name, [a-z0-9_-]+, at most {MAX_NAME_LENGTH} characters")
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
    cross: CrossConfig | None = Field(None, description="a cross-dataset matrix, {train: [...], test: [...]}, "
                                      "instead of the one dataset: models trained on each train dataset, scored "
                                      "on each test dataset on the classes both share")
    conditions: list[str] = Field(default_factory=lambda: [CLEAN], description="evaluation conditions "
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
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="cluster resources per cell "
                                       "(partition, GPUs, time, memory, parallelism)")

    _source: str | None = PrivateAttr(default=None)
    _data_flags: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("conditions")
    @classmethod
    def _clean_first(cls, conditions: list[str]) -> list[str]:
        return clean_first(conditions)

    @property
    def source(self) -> str | None:
        """The file the suite was read from, if any."""
        return self._source

    def set_source(self, source: str | None) -> None:
        """Record the file the suite was read from (copies made with ``model_copy`` keep it)."""
        self._source = source

    @property
    def data_flags(self) -> dict[str, str]:
        """The ``data:`` entries that came from ``--data NAME=PATH`` (merged into ``data``), so that messages
        name the flag, not the suite, as their origin."""
        return dict(self._data_flags)

    def set_data_flags(self, flags: Mapping[str, str]) -> None:
        """Record which ``data:`` entries came from ``--data`` (copies made with ``model_copy`` keep them)."""
        self._data_flags = dict(flags)

    @property
    def experiment(self) -> str:
        """The MLflow experiment name."""
        return self.tracking.experiment or self.name

    def protocols(self, synthetic_fallback: bool = False) -> list[tuple[str, ProtocolConfig]]:
        """The main protocol (named ``main``) then each view, by name. On the synthetic fallback the main
        protocol is ``synthetic_protocol`` when the suite gives one."""
        main = self.synthetic_protocol if synthetic_fallback and self.synthetic_protocol else self.protocol
        return [(MAIN_PROTOCOL, main), *((view.name, view) for view in self.views)]

    def leaky_views(self, synthetic_fallback: bool = False) -> list[str]:
        """The names of the protocols (``main`` or a view) that select models on the test fold."""
        return [name for name, protocol in self.protocols(synthetic_fallback) if protocol.leaky]

    def effective_budget(self, name: str | None = None) -> Budget:
        """The budget ``name`` (default: the suite's), merged with the suite's overrides."""
        chosen = name or self.budget
        if chosen not in BUILTIN_BUDGETS and chosen not in self.budgets:
            raise FbenchError(unknown_name("budget", chosen, [*BUILTIN_BUDGETS, *self.budgets]))
        return merge_budget(chosen, self.budgets.get(chosen))

    def architecture_entries(self) -> list[ArchitectureEntry]:
        """Each architecture x variant, with its unique label and options merged with the variant."""
        return [
            ArchitectureEntry(arch.variant_label(variant), arch.name, {**arch.options, **variant},
                              arch.input_size, dict(arch.recipe), arch.tuned,
                              tuple(self.train_conditions if arch.train_conditions is None
                                    else arch.train_conditions))
            for arch in self.architectures for variant in arch.variants
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars), for hashing and logging."""
        return self.model_dump(mode="json")



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
    if chosen.cell_seconds is not None:
        views = (f", {chosen.cell_seconds * chosen.view_time_fraction:g} s per extra-view cell"
                 if chosen.view_time_fraction < 1 else "")
        floor = (f"; an architecture that could see fewer than {chosen.min_train_images} images is budget-limited "
                 "on this device (not trained, not ranked)" if chosen.min_train_images is not None else "")
        epochs = (f"{chosen.min_epochs} to {chosen.max_epochs}" if chosen.max_epochs is not None
                  else f"at least {chosen.min_epochs}")
        cuts.append(f"time-planned: about {chosen.cell_seconds:g} s per main cell{views} on the run's device; "
                    f"epochs ({epochs}) and training images per architecture from a throughput probe{floor}")
    elif chosen.epoch_scale != 1.0 or chosen.max_epochs is not None or chosen.min_epochs > 1:
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

