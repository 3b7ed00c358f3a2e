"""Running a suite: cells through an executor, each cell's folder written atomically, finished cells reused.

``run_suite`` resolves the dataset (or the synthetic fallback), expands the suite into cells, hands the
unfinished ones to an executor (the local executor runs them in turn), then builds the leaderboard and the
report from the stored per-sample predictions of every cell. A cell that fails (a NaN loss) is recorded as
failed with its reason; the other cells go on. After Ctrl-C or ``kill -9`` the same command resumes: at most
the cell that was running is lost.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from fbench.run import store
from fbench.run.cells import Cell, expand_cells
from fbench.suite.conditions import is_subset, subset_column
from fbench.suite.schema import Budget, EngineConfig, Suite
from fbench.data.cache import CachedImages, build_cache
from fbench.data.locate import dataset_root
from fbench.data.splits import Split, all_folds
from fbench.engine.residency import choose_residency
from fbench.data.table import SampleTable
from fbench.errors import FbenchError
from fbench.registry import Registry, get_architecture, get_dataset

SYNTHETIC_FOLDER = Path("data") / "synth-kdef"
# The fallback set: KDEF's 70 identities x 7 expressions x 5 poses, one session (2,450 images) so that its first
# build and decode stay within a quick suite's time on a CPU; `fbench data synth` builds the two-session set.
FALLBACK_SESSIONS = 1


@dataclass
class CellOutcome:
    cell: Cell
    folder: Path
    status: str  # complete | failed
    reused: bool
    reason: str = ""
    seconds: float = 0.0
    logged: bool = False  # a cluster job already logged the cell to MLflow


class Executor(Protocol):
    """Runs cells. The local executor runs them in turn; cluster executors submit them as jobs."""

    def run(self, cells: list[Cell], run_one: Callable[[Cell], CellOutcome],
            on_done: Callable[[CellOutcome], None]) -> list[CellOutcome]: ...


class LocalExecutor:
    """Runs the cells one after another in this process."""

    def run(self, cells: list[Cell], run_one: Callable[[Cell], CellOutcome],
            on_done: Callable[[CellOutcome], None]) -> list[CellOutcome]:
        outcomes = []
        for cell in cells:
            outcome = run_one(cell)
            on_done(outcome)
            outcomes.append(outcome)
        return outcomes


EXECUTORS: Registry[Any] = Registry("executor")
EXECUTORS.register("local", LocalExecutor(), source="fbench built-in")
# submitit executors: imported (with submitit) only when named
EXECUTORS.register_lazy("slurm", "fbench.run.executors:SLURM", source="fbench built-in")
EXECUTORS.register_lazy("local-jobs", "fbench.run.executors:LOCAL_JOBS", source="fbench built-in")
EXECUTORS.register_lazy("debug", "fbench.run.executors:DEBUG", source="fbench built-in")


@dataclass
class Reporter:
    """What the runner tells the user as it goes (the CLI draws progress bars; tests stay quiet)."""

    start_suite: Callable[[int, int], None] = lambda total, finished: None
    start_cell: Callable[[Cell, int], None] = lambda cell, epochs: None
    epoch: Callable[[dict[str, Any]], None] = lambda record: None
    end_cell: Callable[[CellOutcome], None] = lambda outcome: None
    note: Callable[[str], None] = lambda text: None


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
    if not _complete_synthetic_set(synthetic_folder):
        from fbench.data.synth.build import SynthConfig, build_synthetic_kdef

        config = SynthConfig(sessions=FALLBACK_SESSIONS)
        images = config.identities * config.sessions * len(config.poses) * len(config.expressions)
        note(f"building the synthetic KDEF-like set in {synthetic_folder} (first use: {images:,} images, about two "
             "minutes on two cores)")
        build_synthetic_kdef(synthetic_folder, config, overwrite=False)
    note(f"SYNTHETIC DATA: {suite.dataset!r} was not given ({reason.split('.')[0]}); running on the synthetic "
         f"KDEF-like set in {synthetic_folder}. Procedurally rendered faces, not a real dataset.")
    return DatasetChoice("kdef", synthetic_folder, synthetic=True, fallback=True)


def _complete_synthetic_set(folder: Path) -> bool:
    import json

    marker = folder / "fbench_synthetic.json"
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("complete", False))
    except (OSError, ValueError):
        return False


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
    tracker: Any = None
    reporter: Reporter = field(default_factory=Reporter)
    _caches: dict[tuple[int, int, int], CachedImages] = field(default_factory=dict)

    def folder(self, cell: Cell) -> Path:
        return self.output / cell.suite / cell.key

    def cache(self, size: tuple[int, int, int]) -> CachedImages:
        if size not in self._caches:
            self.reporter.note(f"decoding {self.table.dataset} at {'x'.join(map(str, size))} (cached for later runs)")
            self._caches[size] = build_cache(self.table, size, cache_dir=self.cache_dir)
        return self._caches[size]


def run_cell(cell: Cell, context: RunContext) -> CellOutcome:
    """Train and evaluate one cell, or reuse it when its folder holds a result."""
    folder = context.folder(cell)
    previous = store.finished_result(folder)
    if previous is not None and (previous["status"] == store.COMPLETE or not context.retry_failed):
        return CellOutcome(cell, folder, previous["status"], reused=True, reason=previous.get("reason", ""))
    started = time.perf_counter()
    store.write_json(folder / store.CONFIG, cell.to_dict())
    split = context.splits[cell.view][cell.fold]
    split.save(folder / store.SPLIT)
    from fbench.engine import NonFiniteLossError

    try:
        predictions, history, images = _train_and_predict(cell, context, split, folder)
    except NonFiniteLossError as error:
        outcome = CellOutcome(cell, folder, store.FAILED, reused=False, reason=str(error),
                              seconds=time.perf_counter() - started)
        store.write_json(folder / store.RESULT, _result_record(outcome, context))
        return outcome
    from fbench.score.metrics import condition_metrics

    metrics = condition_metrics(predictions, context.table.num_classes, context.table.label_names)
    store.write_predictions(folder / store.PREDICTIONS, predictions)
    store.write_json(folder / store.HISTORY, history)
    store.write_json(folder / store.METRICS, metrics.to_dict(orient="records"))
    outcome = CellOutcome(cell, folder, store.COMPLETE, reused=False, seconds=time.perf_counter() - started)
    store.write_json(folder / store.RESULT, {**_result_record(outcome, context), "images": images})
    return outcome


def _labels(table: SampleTable, ids: list[str]) -> np.ndarray:
    return table.frame.set_index("sample_id").loc[ids, "label"].to_numpy()


def _train_ids(cell: Cell, split: Split, table: SampleTable) -> list[str]:
    """The split's training ids, cut to the budget (fraction, image cap, compute cap) by a stratified draw
    that depends only on the split."""
    from fbench.data.transforms import BatchAugment
    from fbench.run.sizing import compute_capped_images, forward_macs, stratified_subset

    ids = list(split.train)
    budget = Budget(data_fraction=cell.data_fraction, max_train_images=cell.max_train_images)
    keep = budget.train_images(len(ids))
    if cell.max_train_tmacs is not None:
        recipe = cell.recipe_object()
        spec = get_architecture(cell.architecture).resolve_spec(cell.options).with_input(
            image_size=cell.input_size[1:])
        macs = forward_macs(cell.architecture, cell.options, cell.input_size, table.num_classes)
        copies = BatchAugment.from_recipe(recipe, spec).offline_copies
        keep = min(keep, compute_capped_images(cell.max_train_tmacs, macs, copies, recipe.epochs,
                                               table.num_classes))
    return stratified_subset(ids, _labels(table, ids), keep, cell.protocol["arguments"]["seed"])


def _eval_ids(cell: Cell, ids: Sequence[str], table: SampleTable, part: str) -> list[str]:
    """A validation or test part, cut to the budget's ``max_val_images`` / ``max_eval_images`` (the same draw
    for every architecture)."""
    from fbench.run.sizing import stratified_subset

    ids = list(ids)
    cap = cell.max_eval_images
    if part == "val" and cell.max_val_images is not None:
        cap = cell.max_val_images
    if cap is None or not ids:
        return ids
    seed = cell.protocol["arguments"]["seed"] + (1 if part == "val" else 2)
    return stratified_subset(ids, _labels(table, ids), cap, seed)


def _train_and_predict(cell: Cell, context: RunContext, split: Split, folder: Path
                       ) -> tuple[Any, list[dict], dict[str, int]]:
    """Train the cell, then predict its test part under every condition: (predictions, history, image counts
    of the train, val and test parts)."""
    from fbench.engine import EvalData, TrainData, predict_logits, predictions_frame, train_model

    table = context.table
    architecture = get_architecture(cell.architecture)
    spec = architecture.resolve_spec(cell.options).with_input(image_size=cell.input_size[1:])
    recipe = cell.recipe_object()
    cached = context.cache(cell.input_size)
    device = context.device
    train_positions = cached.positions(_train_ids(cell, split, table))
    val_positions = cached.positions(_eval_ids(cell, split.val, table, "val"))
    test_positions = cached.positions(_eval_ids(cell, split.test, table, "test"))
    images = cached.images
    train = TrainData(_training_images(cell, cached, train_positions, table, device),
                      cached.labels[train_positions].to(device),
                      [cached.sample_ids[i] for i in train_positions.tolist()])
    val = None
    if len(val_positions):
        val = EvalData(_training_images(cell, cached, val_positions, table, device),
                       cached.labels[val_positions].to(device),
                       [cached.sample_ids[i] for i in val_positions.tolist()])
    torch.manual_seed(cell.seed)
    model = architecture.build(table.num_classes, **cell.options)
    context.reporter.start_cell(cell, recipe.epochs)
    engine = EngineConfig(**cell.engine)
    result = train_model(model, train, val, recipe, spec=spec, device=device, seed=cell.seed,
                         checkpoint_path=folder / store.CHECKPOINT, on_epoch=context.reporter.epoch,
                         amp=engine.amp, channels_last=engine.channels_last, compile=engine.compile,
                         eval_batch_size=engine.eval_batch_size, residency=engine.residency)
    test_images = images[test_positions]
    if choose_residency(test_images, device, engine.residency) == "device":
        test_images = test_images.to(device)  # once: every condition reads it there
    test_ids = [cached.sample_ids[i] for i in test_positions.tolist()]
    frame = table.frame.set_index("sample_id")
    poses = frame.loc[test_ids, "pose"].astype(str).tolist()
    subjects = frame.loc[test_ids, "subject"].astype(str).tolist()
    labels = cached.labels[test_positions]
    parts = []
    for condition in ("clean", *cell.perturbations):
        logits = predict_logits(model, test_images, spec, device=device, batch_size=engine.eval_batch_size,
                                amp=engine.amp, channels_last=engine.channels_last,
                                condition=None if condition == "clean" else condition,
                                landmarks=cached.landmarks[test_positions], sample_ids=test_ids, poses=poses,
                                seed=cell.seed)
        parts.append(predictions_frame(logits, labels, test_ids, condition, poses=poses, subjects=subjects))
    parts += _subset_predictions(cell, parts[0], table)
    sizes = {"train": len(train), "val": len(val) if val is not None else 0, "test": len(test_ids)}
    return pd.concat(parts, ignore_index=True), result.history, sizes


def _subset_predictions(cell: Cell, clean: pd.DataFrame, table: SampleTable) -> list[pd.DataFrame]:
    """For each ``subset:NAME`` condition, the clean predictions of the test samples tagged ``cond_NAME``
    (none where the dataset tags no sample: ``prepare`` says so)."""
    parts = []
    for condition in cell.subsets:
        column = subset_column(condition)
        if not _has_subset(table, condition):
            continue
        tagged = set(table.frame.loc[table.frame[column].astype(bool), "sample_id"])
        rows = clean[clean["sample_id"].isin(tagged)]
        parts.append(rows.assign(condition=condition))
    return parts


def _has_subset(table: SampleTable, condition: str) -> bool:
    column = subset_column(condition)
    return column in table.frame.columns and bool(table.frame[column].astype(bool).any())


def _training_images(cell: Cell, cached: CachedImages, positions: torch.Tensor, table: SampleTable,
                     device: torch.device) -> torch.Tensor:
    """The cached images at ``positions``, with the cell's training perturbations mixed in: on ``device`` when
    they fit there (``train_model`` streams them from the host otherwise)."""
    images = cached.images[positions]
    if choose_residency(images, device, EngineConfig(**cell.engine).residency) == "device":
        images = images.to(device)
    if not cell.train_conditions:
        return images
    from fbench.perturb.training import perturb_for_training

    ids = [cached.sample_ids[i] for i in positions.tolist()]
    poses = table.frame.set_index("sample_id").loc[ids, "pose"].astype(str).tolist()
    return perturb_for_training(images, cell.train_conditions, sample_ids=ids,
                                landmarks=cached.landmarks[positions], poses=poses, seed=cell.seed)


def _result_record(outcome: CellOutcome, context: RunContext) -> dict[str, Any]:
    from fbench.tracking import environment_tags

    return {
        "status": outcome.status, "reason": outcome.reason, "seconds": round(outcome.seconds, 3),
        "cell": outcome.cell.name, "key": outcome.cell.key, "device": str(context.device),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment_tags(),
        "machine": platform.node(), "pid": os.getpid(),
    }


def split_table(table: SampleTable, protocols: Iterable[tuple[str, Any]]) -> dict[str, list[Split]]:
    """Every protocol's splits (by view name), checked for disjointness."""
    from fbench.run.cells import protocol_arguments

    splits = {}
    for view, protocol in protocols:
        stored = protocol_arguments(protocol.kind, protocol.split_kwargs())
        made = all_folds(table, stored["kind"], **stored["arguments"])
        for split in made:
            split.check(table)
        splits[view] = made
    return splits


def load_table(choice: DatasetChoice, on_error: str = "raise") -> SampleTable:
    return get_dataset(choice.name).load(choice.root, on_error=on_error)


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
class CellRunner:
    """An executor's ``run_one``: runs a cell in this process (under torchrun when it asks for several
    processes). Cluster executors do not call it; they rebuild the context inside each job from ``suite``,
    ``options`` and the MLflow parent run."""

    context: RunContext
    suite: Suite
    options: RunOptions
    tags: dict[str, str] = field(default_factory=dict)

    def __call__(self, cell: Cell) -> CellOutcome:
        from fbench.run.jobs import processes_per_cell, run_cell_with_torchrun

        if processes_per_cell(self.suite, self.options) > 1:
            return run_cell_with_torchrun(cell, self)
        return run_cell(cell, self.context)


@dataclass
class SuiteRun:
    suite: Suite
    dataset: DatasetChoice
    cells: list[Cell]
    outcomes: list[CellOutcome]
    leaderboards: list[Any]
    budget: str
    num_classes: int
    report: dict[str, Path] = field(default_factory=dict)

    @property
    def failures(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == store.FAILED]


@dataclass
class Prepared:
    choice: DatasetChoice
    table: SampleTable
    splits: dict[str, list[Split]]
    cells: list[Cell]
    budget: str


def prepare(suite: Suite, options: RunOptions, reporter: Reporter) -> Prepared:
    """The dataset, its splits and the suite's cells (nothing trained)."""
    budget = options.budget or suite.budget
    choice = choose_dataset(suite, options.data, reporter.note, options.synthetic_folder)
    table = load_table(choice, options.on_error)
    choice.synthetic = choice.synthetic or table.synthetic
    if table.report.total:
        reporter.note(f"left out {table.report.total} samples of {choice.name}: {table.report.summary()}")
    for condition in (c for c in suite.conditions if is_subset(c)):
        if not _has_subset(table, condition):
            reporter.note(f"{condition}: {choice.name} tags no sample {subset_column(condition)} (its list is "
                          "missing, or this is the synthetic set); the subset is left out of the results")
    splits = split_table(table, suite.protocols(synthetic_fallback=choice.fallback))
    cells = expand_cells(suite, str(choice.root.resolve()), table.synthetic,
                         {view: len(made) for view, made in splits.items()}, budget, fallback=choice.fallback)
    return Prepared(choice, table, splits, cells, budget)


def run_suite(suite: Suite, options: RunOptions | None = None, reporter: Reporter | None = None) -> SuiteRun:
    """Run every cell of ``suite`` (reusing finished ones), then build its leaderboards and report."""
    from fbench.engine.devices import resolve_device
    from fbench.tracking import environment_tags, git_commit, make_tracker

    options = options or RunOptions()
    reporter = reporter or Reporter()
    prepared = prepare(suite, options, reporter)
    device = resolve_device(options.device or suite.device)
    enabled = suite.tracking.enabled if options.tracking is None else options.tracking
    tracker = make_tracker(enabled, options.tracking_uri or suite.tracking.resolved_uri())
    context = RunContext(suite, prepared.table, Path(suite.output), device, prepared.splits, options.cache_dir,
                         options.retry_failed, tracker, reporter)
    cells = prepared.cells
    finished = sum(1 for cell in cells if store.finished_result(context.folder(cell)) is not None)
    reporter.start_suite(len(cells), finished)
    tags = {"suite": suite.name, "dataset": prepared.choice.name, "synthetic": str(prepared.table.synthetic).lower(),
            "budget": prepared.budget, "git_commit": git_commit() or "unknown", **environment_tags()}
    with tracker:
        tracker.start_suite(suite.experiment, f"{suite.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                            {"suite": suite.to_dict(), "budget": prepared.budget, "cells": len(cells)}, tags)

        def done(outcome: CellOutcome) -> None:
            reporter.end_cell(outcome)
            if not outcome.reused and not outcome.logged:
                _log_cell(tracker, outcome, tags)

        executor = EXECUTORS.get(options.executor)
        outcomes = executor.run(cells, CellRunner(context, suite, options, tags), done)
        run = _finish(suite, prepared, outcomes, options, str(device))
        tracker.log_suite_metrics(_suite_metrics(run.leaderboards))
        if run.report:
            tracker.log_suite_artifacts(list(run.report.values()))
    return run


def rescore_suite(suite: Suite, options: RunOptions | None = None, rewrite_metrics: bool = False,
                  reporter: Reporter | None = None) -> SuiteRun:
    """The leaderboard (and, with ``rewrite_metrics``, every cell's metrics) from stored predictions only."""
    from fbench.score.metrics import condition_metrics

    options = options or RunOptions()
    reporter = reporter or Reporter()
    prepared = prepare(suite, options, reporter)
    outcomes = []
    missing = 0
    for cell in prepared.cells:
        folder = Path(suite.output) / cell.suite / cell.key
        previous = store.finished_result(folder)
        if previous is None:
            missing += 1
            continue
        if rewrite_metrics and previous["status"] == store.COMPLETE:
            predictions = store.read_predictions(folder / store.PREDICTIONS)
            metrics = condition_metrics(predictions, prepared.table.num_classes, prepared.table.label_names)
            store.write_json(folder / store.METRICS, metrics.to_dict(orient="records"))
        outcomes.append(CellOutcome(cell, folder, previous["status"], reused=True,
                                    reason=previous.get("reason", "")))
    if missing:
        reporter.note(f"{missing} of {len(prepared.cells)} cells have no results yet; `fbench run` trains them")
    if not outcomes:
        raise FbenchError(f"suite {suite.name!r} has no stored results in {suite.output}; run it first with "
                          f"`fbench run {suite.source or 'SUITE'}`")
    return _finish(suite, prepared, outcomes, options, "stored results")


def _finish(suite: Suite, prepared: Prepared, outcomes: list[CellOutcome], options: RunOptions, device: str
            ) -> SuiteRun:
    from fbench.score.leaderboard import build_leaderboards, collect_predictions

    complete = [(o.cell, o.folder) for o in outcomes if o.status == store.COMPLETE]
    table = prepared.table
    leaderboards = build_leaderboards(collect_predictions(complete), table.num_classes, table.label_names)
    run = SuiteRun(suite, prepared.choice, prepared.cells, outcomes, leaderboards, prepared.budget,
                   table.num_classes)
    if options.write_report and leaderboards:
        from fbench.report.suite import write_suite_report

        run.report = write_suite_report(run, device)
    return run


def _log_cell(tracker: Any, outcome: CellOutcome, suite_tags: dict[str, str]) -> None:
    cell = outcome.cell
    history = store.read_json(outcome.folder / store.HISTORY) if (outcome.folder / store.HISTORY).is_file() else []
    metrics: dict[str, float] = {}
    if (outcome.folder / store.METRICS).is_file():
        for row in store.read_json(outcome.folder / store.METRICS):
            for name in ("accuracy", "balanced_accuracy", "macro_f1", "drop_from_clean"):
                value = row.get(name)
                if value is not None:
                    metrics[f"{name}.{row['condition']}"] = float(value)
    tags = {**suite_tags, "architecture": cell.architecture, "label": cell.label, "view": cell.view,
            "fold": str(cell.fold), "seed": str(cell.seed), "status": outcome.status, "cell_key": cell.key}
    if outcome.reason:
        tags["failure"] = outcome.reason[:500]
    artifacts = [outcome.folder / name for name in (store.PREDICTIONS, store.METRICS, store.CONFIG)
                 if (outcome.folder / name).is_file()]
    tracker.log_cell(cell.name, cell.to_dict(), history, metrics, tags, artifacts)


def _suite_metrics(leaderboards: list[Any]) -> dict[str, float]:
    metrics = {}
    for board in leaderboards:
        for _, row in board.aggregate.iterrows():
            metrics[f"{board.view}.{row['label']}.{row['condition']}.accuracy"] = float(row["accuracy_mean"])
    return metrics


@dataclass
class EfficiencyRun:
    suite: Suite
    profiles: Any  # DataFrame: label, architecture, input, params, macs, macs_torch, latency_ms, throughput
    device: str
    report: dict[str, Path] = field(default_factory=dict)


def run_efficiency(suite: Suite, options: RunOptions | None = None, reporter: Reporter | None = None
                   ) -> EfficiencyRun:
    """Profile every architecture x variant of an ``efficiency_only`` suite; nothing is trained."""
    from fbench.engine.devices import resolve_device
    from fbench.profile import profile_architecture

    options = options or RunOptions()
    reporter = reporter or Reporter()
    device = resolve_device(options.device or suite.device)
    entries = suite.architecture_entries()
    reporter.start_suite(len(entries), 0)
    rows = []
    for entry in entries:
        reporter.note(f"profiling {entry.label}")
        profile = profile_architecture(entry.name, entry.options, input_size=entry.input_size, device=str(device))
        rows.append({"label": entry.label, "architecture": entry.name,
                     "input": "x".join(map(str, profile.input_size)), "params": profile.params,
                     "macs": profile.macs, "macs_torch": profile.macs_torch, "latency_ms": profile.latency_ms,
                     "throughput": profile.throughput, "throughput_batch_size": profile.throughput_batch_size})
    run = EfficiencyRun(suite, pd.DataFrame(rows), str(device))
    if options.write_report:
        from fbench.report.document import ReportData, report_folder, write_report

        data = ReportData(suite=suite.name, title=f"{suite.name}: {suite.description or 'efficiency'}",
                          leaderboard=pd.DataFrame(), efficiency=run.profiles,
                          provenance={"device": str(device), "suite file": suite.source or "(built in Python)"})
        run.report = write_report(report_folder(Path(suite.reports), suite.name), data)
    return run
