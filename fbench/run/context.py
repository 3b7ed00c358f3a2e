"""What the cells of one suite share, prepared once: the dataset (or the synthetic stand-in), its splits, the
cells, the decoded-image caches, where results go, and the callbacks that tell the user how it goes.

:func:`prepare` resolves the dataset and expands the suite into cells (nothing is trained); a :class:`RunContext`
holds what running those cells needs. The CLI, cluster jobs (which rebuild the context inside each job) and tune
all start here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from fbench.data.cache import CachedImages, build_cache
from fbench.data.locate import DatasetLocation, env_var, given_location, no_location_error, read_location
from fbench.data.splits import Split, all_folds
from fbench.data.summary import bad_files, bad_files_text
from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
from fbench.data.table import SampleTable
from fbench.data.transforms import BatchAugment
from fbench.engine.devices import resolve_device
from fbench.errors import FbenchError
from fbench.registry import get_architecture
from fbench.run.cells import Cell, ImageCaps, entry_setup, expand_cells, protocol_arguments, recipe_dict
from fbench.run.plan import (
    CellWork,
    Plan,
    PlanEntry,
    Throughput,
    device_description,
    make_plan,
    plan_fingerprint,
    plan_lock,
    plan_path,
    probe_throughput,
    read_plan,
    store_plan,
)
from fbench.suite.conditions import is_subset, perturbations, subset_column
from fbench.suite.schema import LEAKY_LABEL, MAIN_PROTOCOL, ProtocolConfig, Suite

SYNTHETIC_FOLDER = Path("data") / "synth-kdef"
# The fallback set: KDEF's 70 identities x 7 expressions x 5 poses, one session (2,450 images) so that its first
# build and decode stay within a quick suite's time on a CPU; `fbench data synth` builds the two-session set.
FALLBACK_SESSIONS = 1
# ... with expressions 1.4x as strong as `fbench data synth`'s default, so that a quick CPU run separates
# architectures (at 1.0 every baseline stayed within 10 points of chance at that budget); frontal views stay
# easier than profiles, which hide half the face.
FALLBACK_EXPRESSION_STRENGTH = 1.4
# The fewest images of each class a split's train and test parts may hold.
MIN_PER_CLASS = 2


@dataclass
class Progress:
    """What a run tells the user as it goes (the CLI draws progress bars; tests and jobs stay quiet or print)."""

    start_suite: Callable[[int, int], None] = lambda total, finished: None
    start_cell: Callable[[Cell, int], None] = lambda cell, epochs: None
    epoch: Callable[[dict[str, Any]], None] = lambda record: None
    end_cell: Callable[[Any], None] = lambda outcome: None  # a fbench.run.cell.CellOutcome
    note: Callable[[str], None] = lambda text: None


@dataclass
class RunOptions:
    """How to run a suite, beyond the suite itself (the command line's choices)."""

    data: dict[str, str] = field(default_factory=dict)
    budget: str | None = None
    device: str | None = None
    tracking: bool | None = None  # None: as the suite says
    tracking_uri: str | None = None
    executor: str = "local"
    retry_failed: bool = False
    cache_dir: Path | None = None
    on_error: str = "raise"
    write_report: bool = True
    synthetic_folder: Path = SYNTHETIC_FOLDER
    resources: dict[str, Any] = field(default_factory=dict)  # overrides of the suite's resources: block
    wait: bool = True  # cluster executors: wait for the jobs, then build the leaderboard
    partial: bool = False  # rank architectures with cells missing, failed or corrupt against complete ones
    plugins: list[str] = field(default_factory=list)  # --plugin modules, imported again inside each job


@dataclass
class DatasetChoice:
    name: str
    root: Path
    synthetic: bool
    fallback: bool  # no location was given for the suite's dataset and the synthetic set stands in
    origin: str = ""  # where the location was given ("--data kdef=PATH", ...); the fallback's own wording


def choose_dataset(suite: Suite, cli_paths: dict[str, str] | None, note: Callable[[str], None],
                   synthetic_folder: Path = SYNTHETIC_FOLDER) -> DatasetChoice:
    """The suite's dataset where a location is given (``cli_paths``, i.e. ``--data``, then the suite's ``data:``
    block, then ``$FBENCH_DATA_<NAME>``); a given location that does not exist or is empty is an error naming it
    and where it came from. Only when none was given, and the suite allows it, the synthetic KDEF-like set stands
    in (built on first use) and ``note`` says so."""
    cli, block = location_sources(suite, cli_paths)
    location = given_location(suite.dataset, cli, block, suite.source)
    if location is not None:
        return DatasetChoice(suite.dataset, location.root, synthetic=False, fallback=False, origin=location.origin)
    if not suite.synthetic_fallback:
        raise no_location_error(suite.dataset)
    if not complete_synthetic_set(synthetic_folder):
        config = SynthConfig(sessions=FALLBACK_SESSIONS, expression_strength=FALLBACK_EXPRESSION_STRENGTH)
        images = config.identities * config.sessions * len(config.poses) * len(config.expressions)
        note(f"building the synthetic KDEF-like set in {synthetic_folder} (first use: {images:,} images, about a "
             "minute on two cores)")
        build_synthetic_kdef(synthetic_folder, config, overwrite=False)
    note(f"SYNTHETIC DATA: no location was given for {suite.dataset!r} (--data {suite.dataset}=PATH, the suite's "
         f"data: block or ${env_var(suite.dataset)}); running on the synthetic KDEF-like set in {synthetic_folder}. "
         "Procedurally rendered faces, not a real dataset; the leaderboard and report say so.")
    return DatasetChoice("kdef", synthetic_folder, synthetic=True, fallback=True,
                         origin=f"the synthetic stand-in (no location given for {suite.dataset!r})")


def location_sources(suite: Suite, cli_paths: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """Dataset locations as (given on the command line, given in the suite's ``data:`` block): ``data:`` entries
    that came from ``--data`` count as the command line's, so that messages name the flag."""
    flags = {name: path for name, path in suite.data_flags.items() if suite.data.get(name) == path}
    block = {name: path for name, path in suite.data.items() if name not in flags}
    return {**flags, **(cli_paths or {})}, block


def complete_synthetic_set(folder: Path) -> bool:
    """Whether ``folder`` holds a finished synthetic set (its marker file says so)."""
    marker = folder / "fbench_synthetic.json"
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("complete", False))
    except (OSError, ValueError):
        return False


def load_table(choice: DatasetChoice, on_error: str = "raise") -> SampleTable:
    """The chosen dataset's sample table; a location without readable samples is an error naming its origin."""
    return read_location(DatasetLocation(choice.name, choice.root, choice.origin or "the suite"), on_error)


def split_table(table: SampleTable, protocols: Iterable[tuple[str, ProtocolConfig]]) -> dict[str, list[Split]]:
    """Every protocol's splits (by view name), checked for disjointness and for enough images of each class."""
    check_classes(table)
    splits = {}
    for view, protocol in protocols:
        stored = protocol_arguments(protocol.kind, protocol.split_kwargs())
        made = all_folds(table, stored["kind"], **stored["arguments"])
        for number, split in enumerate(made):
            split.check(table)
            check_split_classes(table, split, view if len(made) == 1 else f"{view} split {number + 1}/{len(made)}")
        splits[view] = made
    return splits


def class_counts(table: SampleTable, sample_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Images per class name, of the whole table or of ``sample_ids``."""
    frame = table.frame if sample_ids is None else table.frame[table.frame["sample_id"].isin(list(sample_ids))]
    counts = frame["label"].value_counts().sort_index()
    return {table.label_names[int(label)]: int(n) for label, n in zip(counts.index.to_numpy(), counts.to_numpy())}


def check_classes(table: SampleTable) -> None:
    """Refuse a dataset with fewer than two classes: accuracy on it says nothing (100 % by construction)."""
    counts = class_counts(table)
    if len(counts) < 2:
        held = ", ".join(f"{name}: {n} images" for name, n in counts.items()) or "no images"
        raise FbenchError(f"dataset {table.dataset!r} at {table.root} holds {len(counts)} class ({held}); a "
                          f"classifier needs at least 2. Point --data {table.dataset}=PATH at the whole dataset "
                          "(one folder or file per expression)")


def check_split_classes(table: SampleTable, split: Split, where: str) -> None:
    """Refuse a split whose train or test part holds fewer than ``MIN_PER_CLASS`` images of a class the dataset
    has: the model cannot learn it, or its accuracy rests on one image."""
    wanted = class_counts(table)
    for part, ids in (("train", split.train), ("test", split.test)):
        counts = class_counts(table, ids)
        short = {name: counts.get(name, 0) for name in wanted if counts.get(name, 0) < MIN_PER_CLASS}
        if short:
            listed = ", ".join(f"{name}: {n}" for name, n in short.items())
            raise FbenchError(f"dataset {table.dataset!r} at {table.root}: the {part} part of {where} holds fewer "
                              f"than {MIN_PER_CLASS} images of class(es) {listed}. Add images of those classes, "
                              "remove them from the dataset, or use a protocol with fewer folds")


def has_subset(table: SampleTable, condition: str) -> bool:
    """Whether the dataset tags any sample for the ``subset:NAME`` condition."""
    column = subset_column(condition)
    return column in table.frame.columns and bool(table.frame[column].astype(bool).any())


@dataclass
class Prepared:
    choice: DatasetChoice
    table: SampleTable
    splits: dict[str, list[Split]]
    cells: list[Cell]
    budget: str
    plan: Plan | None = None  # a time-planned budget's plan (fbench.run.plan)
    # A cross-dataset suite's tables by matrix name (its cells' ``dataset``), and its layout (fbench.run.cross)
    tables: dict[str, SampleTable] = field(default_factory=dict)
    cross: Any = None


Planning = Literal["probe", "stored"]


def suite_plan(suite: Suite, budget_name: str, table: SampleTable, splits: dict[str, list[Split]], fallback: bool,
               device: torch.device, planning: Planning, note: Callable[[str], None],
               extra_test_images: int = 0) -> Plan | None:
    """The plan of a time-planned budget (None for the others): the stored one when it was made for this device
    and these cells, else probed and stored (``planning="probe"``, a run); ``extra_test_images`` are tested by
    every cell beside its split's test part (a cross-dataset cell's targets); ``planning="stored"`` (status,
    leaderboard, cluster jobs) takes the stored one whatever device made it, and never probes."""
    budget = suite.effective_budget(budget_name)
    if budget.cell_seconds is None:
        return None
    caps = ImageCaps.from_budget(budget)
    passes = 1 + len(perturbations(suite.conditions))
    works: list[CellWork] = []
    probes: dict[str, Callable[[], Throughput]] = {}
    described: list[Any] = []
    for view, protocol in suite.protocols(synthetic_fallback=fallback):
        first = splits[view][0]
        for entry in suite.architecture_entries():
            options, size, recipe = entry_setup(entry, budget)
            spec = get_architecture(entry.name).resolve_spec(options).with_input(image_size=size[1:])
            available = caps.train_images(len(first.train) + (len(first.val) if protocol.leaky else 0))
            val = len(first.test) if protocol.leaky else len(first.val)
            val_cap, test_cap = caps.eval_cap("val"), caps.eval_cap("test")
            works.append(CellWork(entry.label, view, available, val if val_cap is None else min(val, val_cap),
                                  (len(first.test) if test_cap is None else min(len(first.test), test_cap))
                                  + extra_test_images, passes,
                                  BatchAugment.from_recipe(recipe, spec).offline_copies, recipe.epochs))
            probes[entry.label] = functools.partial(probe_throughput, entry.name, options, size, recipe,
                                                    table.num_classes, device, suite.engine)
            described.append([entry.label, entry.name, options, size, recipe_dict(recipe)])
    fingerprint = plan_fingerprint(works, {"budget": budget.model_dump(), "entries": described,
                                           "engine": suite.engine.model_dump()})
    path = plan_path(Path(suite.output), suite.name, budget_name)
    if planning == "stored":
        plan = read_plan(path, None, fingerprint)
        if plan is None:
            raise FbenchError(f"the {budget_name!r} budget is planned from a throughput probe on the suite's first "
                              f"run, and {path} holds no plan for these cells; run `fbench run "
                              f"{suite.source or suite.name}` first")
        return plan
    described_device = device_description(device)
    with plan_lock(path):  # a second run started at the same time waits, then reads this one's plan
        plan = read_plan(path, described_device, fingerprint)
        if plan is None:
            plan = make_plan(budget_name, budget, works, probes, described_device, fingerprint, table.num_classes,
                             note)
            store_plan(plan, path)
    return plan


def prepare(suite: Suite, options: RunOptions, progress: Progress, planning: Planning = "probe") -> Prepared:
    """The dataset, its splits and the suite's cells (nothing trained). A time-planned budget is planned here
    (see :func:`suite_plan`)."""
    budget = options.budget or suite.budget
    choice = choose_dataset(suite, options.data, progress.note, options.synthetic_folder)
    table = load_table(choice, options.on_error)
    if table.synthetic and not choice.fallback:
        progress.note(f"SYNTHETIC DATA: the dataset at {choice.root} (from {choice.origin}) is marked synthetic "
                      "(procedurally rendered faces); the leaderboard and report say so")
    choice.synthetic = choice.synthetic or table.synthetic
    bad = bad_files(table)
    if table.report.total > len(bad):  # rows left out for other reasons than their file (labels, exclusions)
        progress.note(f"left out {table.report.total} samples of {choice.name}: {table.report.summary()}")
    if bad:
        progress.note(f"{len(bad)} image file(s) under {choice.root} left out (--on-error skip): "
                      f"{bad_files_text(bad)}; the report and the MLflow run list them")
    for condition in (c for c in suite.conditions if is_subset(c)):
        if not has_subset(table, condition):
            progress.note(f"{condition}: {choice.name} tags no sample {subset_column(condition)} (its list is "
                          "missing, or this is the synthetic set); the subset is left out of the results")
    splits = split_table(table, suite.protocols(synthetic_fallback=choice.fallback))
    device = resolve_device(options.device or suite.device)
    plan = suite_plan(suite, budget, table, splits, choice.fallback, device, planning, progress.note)
    cells = expand_cells(suite, str(choice.root.resolve()), table.synthetic,
                         {view: len(made) for view, made in splits.items()}, budget, fallback=choice.fallback,
                         dataset_fingerprint=table.fingerprint(), plan=plan)
    if plan is not None:
        views_by_label: dict[str, list[PlanEntry]] = {}
        for entry in plan.limited():  # one note per architecture: its main protocol's reason, else its first view's
            views_by_label.setdefault(entry.label, []).append(entry)
        for label, entries in views_by_label.items():
            first = next((e for e in entries if e.view == MAIN_PROTOCOL), entries[0])
            views = ", ".join(e.view for e in entries)
            progress.note(f"BUDGET-LIMITED ON THIS DEVICE: {label} is not trained ({views}) under the {budget!r} "
                          f"budget: {first.limited}. It is listed, not ranked; `--budget paper` or a faster device "
                          "trains it")
    for view in suite.leaky_views(choice.fallback):
        progress.note(f"LEAKY PROTOCOL ({LEAKY_LABEL}): {'the main protocol' if view == 'main' else 'view ' + view} "
                      "is a paper's own protocol that selects and stops on the test fold; its accuracies are "
                      "optimistic, and the leaderboard, report and MLflow tags say so")
    for note in setting_notes(cells):
        progress.note(note)
    return Prepared(choice, table, splits, cells, budget, plan)


def setting_notes(cells: Iterable[Cell]) -> list[str]:
    """``label: note`` for each architecture x variant whose options depart from its paper's setting (its spec's
    ``unset_option_notes``, e.g. SCAN-CCI without ``backbone_weights``), once per label."""
    notes: dict[str, list[str]] = {}
    for cell in cells:
        if cell.label not in notes:
            notes[cell.label] = get_architecture(cell.architecture).setting_notes(cell.options)
    return [f"{label}: {note}" for label, items in notes.items() for note in items]


@dataclass
class RunContext:
    """What cells of one suite share: the table, the splits, the caches, and where things go."""

    suite: Suite
    table: SampleTable
    output: Path
    device: torch.device
    splits: dict[str, list[Split]]
    cache_dir: Path | None = None
    retry_failed: bool = False
    progress: Progress = field(default_factory=Progress)
    caches: dict[tuple[int, int, int], CachedImages] = field(default_factory=dict)
    # A cross-dataset suite's tables by matrix name (fbench.run.cross), and their decoded caches
    tables: dict[str, SampleTable] = field(default_factory=dict)
    dataset_caches: dict[tuple[str, tuple[int, int, int]], CachedImages] = field(default_factory=dict)

    def folder(self, cell: Cell) -> Path:
        return self.output / cell.suite / cell.key

    def table_of(self, dataset: str) -> SampleTable:
        """The table of ``dataset`` (a cross-dataset suite's name for it); the suite's table otherwise."""
        return self.tables.get(dataset, self.table)

    def cache(self, size: tuple[int, int, int], dataset: str | None = None) -> CachedImages:
        """The table (of ``dataset``, in a cross-dataset suite) decoded at ``size`` (built, or read from the on-disk
        cache, on first use in this process)."""
        if dataset is not None and dataset in self.tables:
            if (dataset, size) not in self.dataset_caches:
                self.progress.note(f"decoding {dataset} at {'x'.join(map(str, size))} (cached for later runs)")
                self.dataset_caches[(dataset, size)] = build_cache(self.tables[dataset], size,
                                                                   cache_dir=self.cache_dir, note=self.progress.note)
            return self.dataset_caches[(dataset, size)]
        if size not in self.caches:
            self.progress.note(f"decoding {self.table.dataset} at {'x'.join(map(str, size))} (cached for later "
                               "runs)")
            self.caches[size] = build_cache(self.table, size, cache_dir=self.cache_dir, note=self.progress.note)
        return self.caches[size]
