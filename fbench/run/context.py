"""What the cells of one suite share, prepared once: the dataset (or the synthetic stand-in), its splits, the
cells, the decoded-image caches, where results go, and the callbacks that tell the user how it goes.

:func:`prepare` resolves the dataset and expands the suite into cells (nothing is trained); a :class:`RunContext`
holds what running those cells needs. The CLI, cluster jobs (which rebuild the context inside each job) and tune
all start here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fbench.data.cache import CachedImages, build_cache
from fbench.data.locate import dataset_root
from fbench.data.splits import Split, all_folds
from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
from fbench.data.table import SampleTable
from fbench.errors import FbenchError
from fbench.registry import get_dataset
from fbench.run.cells import Cell, expand_cells, protocol_arguments
from fbench.suite.conditions import is_subset, subset_column
from fbench.suite.schema import ProtocolConfig, Suite

SYNTHETIC_FOLDER = Path("data") / "synth-kdef"
# The fallback set: KDEF's 70 identities x 7 expressions x 5 poses, one session (2,450 images) so that its first
# build and decode stay within a quick suite's time on a CPU; `fbench data synth` builds the two-session set.
FALLBACK_SESSIONS = 1


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
    plugins: list[str] = field(default_factory=list)  # --plugin modules, imported again inside each job


@dataclass
class DatasetChoice:
    name: str
    root: Path
    synthetic: bool
    fallback: bool  # the suite's dataset had no location and the synthetic set stands in


def choose_dataset(suite: Suite, cli_paths: dict[str, str] | None, note: Callable[[str], None],
                   synthetic_folder: Path = SYNTHETIC_FOLDER) -> DatasetChoice:
    """The suite's dataset where it is given; else, when the suite allows it, the synthetic KDEF-like set,
    built on first use."""
    try:
        root = dataset_root(suite.dataset, cli_paths, suite.data)
        return DatasetChoice(suite.dataset, root, synthetic=False, fallback=False)
    except FbenchError as missing:
        if not suite.synthetic_fallback:
            raise
        reason = str(missing)
    if not complete_synthetic_set(synthetic_folder):
        config = SynthConfig(sessions=FALLBACK_SESSIONS)
        images = config.identities * config.sessions * len(config.poses) * len(config.expressions)
        note(f"building the synthetic KDEF-like set in {synthetic_folder} (first use: {images:,} images, about two "
             "minutes on two cores)")
        build_synthetic_kdef(synthetic_folder, config, overwrite=False)
    note(f"SYNTHETIC DATA: {suite.dataset!r} was not given ({reason.split('.')[0]}); running on the synthetic "
         f"KDEF-like set in {synthetic_folder}. Procedurally rendered faces, not a real dataset.")
    return DatasetChoice("kdef", synthetic_folder, synthetic=True, fallback=True)


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
    return get_dataset(choice.name).load(choice.root, on_error=on_error)


def split_table(table: SampleTable, protocols: Iterable[tuple[str, ProtocolConfig]]) -> dict[str, list[Split]]:
    """Every protocol's splits (by view name), checked for disjointness."""
    splits = {}
    for view, protocol in protocols:
        stored = protocol_arguments(protocol.kind, protocol.split_kwargs())
        made = all_folds(table, stored["kind"], **stored["arguments"])
        for split in made:
            split.check(table)
        splits[view] = made
    return splits


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


def prepare(suite: Suite, options: RunOptions, progress: Progress) -> Prepared:
    """The dataset, its splits and the suite's cells (nothing trained)."""
    budget = options.budget or suite.budget
    choice = choose_dataset(suite, options.data, progress.note, options.synthetic_folder)
    table = load_table(choice, options.on_error)
    choice.synthetic = choice.synthetic or table.synthetic
    if table.report.total:
        progress.note(f"left out {table.report.total} samples of {choice.name}: {table.report.summary()}")
    for condition in (c for c in suite.conditions if is_subset(c)):
        if not has_subset(table, condition):
            progress.note(f"{condition}: {choice.name} tags no sample {subset_column(condition)} (its list is "
                          "missing, or this is the synthetic set); the subset is left out of the results")
    splits = split_table(table, suite.protocols(synthetic_fallback=choice.fallback))
    cells = expand_cells(suite, str(choice.root.resolve()), table.synthetic,
                         {view: len(made) for view, made in splits.items()}, budget, fallback=choice.fallback)
    return Prepared(choice, table, splits, cells, budget)


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

    def folder(self, cell: Cell) -> Path:
        return self.output / cell.suite / cell.key

    def cache(self, size: tuple[int, int, int]) -> CachedImages:
        """The table decoded at ``size`` (built, or read from the on-disk cache, on first use in this process)."""
        if size not in self.caches:
            self.progress.note(f"decoding {self.table.dataset} at {'x'.join(map(str, size))} (cached for later "
                               "runs)")
            self.caches[size] = build_cache(self.table, size, cache_dir=self.cache_dir)
        return self.caches[size]
