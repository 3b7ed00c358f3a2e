"""The flow, composed: prepare -> execute -> score -> report -> track.

:func:`run_suite` is what ``fbench run`` and a notebook call::

    import fbench
    run = fbench.run_suite(fbench.load_suite("multiview"), budget="smoke")

Keyword arguments change fields of :class:`~fbench.run.context.RunOptions` (``budget``, ``device``,
``tracking``, ``executor``, ...), the command line's choices.

Each stage lives in its own package (:mod:`fbench.run` trains cells and never imports reports or tracking,
:mod:`fbench.score` turns stored predictions into leaderboards, :mod:`fbench.report` writes documents,
:mod:`fbench.tracking` logs to MLflow); this module only wires them together.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fbench.data.cache import detection_counts, landmark_counts
from fbench.data.files import unwritable
from fbench.data.summary import bad_files
from fbench.data.table import CANONICAL_LABELS
from fbench.engine.devices import resolve_device
from fbench.errors import FbenchError, did_you_mean
from fbench.profile import profile_architecture
from fbench.report.document import report_folder, write_report
from fbench.report.suite import architecture_profiles, write_suite_report
from fbench.report.tables import ReportData
from fbench.run import store
from fbench.run.cell import CellOutcome, cell_metrics
from fbench.run.cells import Cell
from fbench.run.context import DatasetChoice, Prepared, Progress, RunOptions
from fbench.run.cross import CrossLayout, prepare_suite
from fbench.run.plan import Plan
from fbench.run.provenance import environment_tags, git_commit
from fbench.run.suite import execute, stored_outcomes
from fbench.score.completeness import Completeness, completeness
from fbench.score.cross import (
    cell_alignments,
    cross_matrix,
    cross_metrics,
    cross_per_pose,
    pair_completeness,
    pair_predictions,
)
from fbench.score.leaderboard import Leaderboard, build_leaderboards, collect_predictions
from fbench.suite.schema import Suite
from fbench.tracking import (
    CellJobLogger,
    TrackingTarget,
    log_cell,
    log_cross_summaries,
    log_summaries,
    make_tracker,
    selection_tags,
    skipped_image_tags,
)


@dataclass
class SuiteRun:
    suite: Suite
    dataset: DatasetChoice
    cells: list[Cell]
    outcomes: list[CellOutcome]
    leaderboards: list[Leaderboard]
    budget: str
    num_classes: int
    completeness: Completeness = field(default_factory=Completeness)
    report: dict[str, Path] = field(default_factory=dict)
    skipped_files: dict[str, str] = field(default_factory=dict)  # image files left out (--on-error skip): reason
    face_crops: dict[str, int] = field(default_factory=dict)  # how the face crops were made: count by method
    landmark_sources: dict[str, dict[str, int]] = field(default_factory=dict)  # per pose: count by source
    plan: Plan | None = None  # a time-planned budget's plan: each architecture's epochs, the budget-limited ones
    # A cross-dataset suite: its layout, and fbench.score.cross.cross_matrix's frame (the leaderboards are then
    # one per trained-on x tested-on pair)
    cross_layout: CrossLayout | None = None
    cross: pd.DataFrame | None = None
    cross_poses: pd.DataFrame | None = None  # fbench.score.cross.cross_per_pose: each pair's accuracy per pose

    @property
    def failures(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == store.FAILED]


def run_options(options: RunOptions | None, changes: dict[str, Any]) -> RunOptions:
    """``options`` (default: the defaults) with ``changes`` to its fields; an unknown field is an FbenchError."""
    fields = [f.name for f in dataclasses.fields(RunOptions)]
    for name in changes:
        if name not in fields:
            raise FbenchError(f"RunOptions has no field {name!r}{did_you_mean(name, fields)}; fields: "
                              f"{', '.join(fields)}")
    return dataclasses.replace(options or RunOptions(), **changes)


def run_suite(suite: Suite, options: RunOptions | None = None, progress: Progress | None = None,
              **changes: Any) -> SuiteRun:
    """Run every cell of ``suite`` (reusing finished ones), then build its leaderboards and report, logging the
    suite and each cell to MLflow when tracking is on. ``changes`` change fields of ``options``."""
    options = run_options(options, changes)
    progress = progress or Progress()
    prepared = prepare_suite(suite, options, progress)
    device = resolve_device(options.device or suite.device)
    enabled = suite.tracking.enabled if options.tracking is None else options.tracking
    tracker = make_tracker(enabled, options.tracking_uri or suite.tracking.resolved_uri())
    tags = {"suite": suite.name, "dataset": prepared.choice.name, "synthetic": str(prepared.table.synthetic).lower(),
            "budget": prepared.budget, "git_commit": git_commit() or "unknown", **environment_tags(),
            **selection_tags(suite.leaky_views(prepared.choice.fallback),
                             [name for name, _ in suite.protocols(prepared.choice.fallback)])}
    if prepared.plan is not None and prepared.plan.limited():  # listed on the parent run, as in the report
        tags["budget_limited"] = ", ".join(dict.fromkeys(entry.label for entry in prepared.plan.limited()))
    with tracker:
        tracker.start_suite(suite.experiment, f"{suite.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                            {"suite": suite.to_dict(), "budget": prepared.budget, "cells": len(prepared.cells)},
                            {**tags, **skipped_image_tags(bad_files(prepared.table))})

        def done(outcome: CellOutcome) -> None:
            if not outcome.reused and not outcome.logged:
                log_cell(tracker, outcome, tags)

        target = TrackingTarget.of(tracker)
        job_logger = CellJobLogger(target, tags) if target is not None else None
        outcomes = execute(suite, prepared, options, progress, device, done, job_logger)
        run = score_and_report(suite, prepared, outcomes, options, str(device), progress)
        tracker.log_suite_metrics(suite_metrics(run.leaderboards))
        if tracker.enabled:  # a summary run per architecture x view: the runs table sorted by accuracy
            log_summaries(tracker, run.leaderboards, run.cells, architecture_profiles(run, Path(suite.output)), tags)
            if run.cross is not None and run.cross_layout is not None:  # the matrix: cross/<train>/<test>/...
                log_cross_summaries(tracker, {label: cross_metrics(run.cross, label)
                                              for label in dict.fromkeys(run.cross["label"])},
                                    {"trained_on": run.cross_layout.train, "tested_on": run.cross_layout.test},
                                    tags)
        if run.report:
            tracker.log_suite_artifacts(list(run.report.values()))
    return run


def rescore_suite(suite: Suite, options: RunOptions | None = None, rewrite_metrics: bool = False,
                  progress: Progress | None = None, **changes: Any) -> SuiteRun:
    """The leaderboard (and, with ``rewrite_metrics``, every cell's metrics) from stored predictions only."""
    options = run_options(options, changes)
    progress = progress or Progress()
    prepared = prepare_suite(suite, options, progress, planning="stored")
    outcomes, missing = stored_outcomes(suite, prepared, progress)
    if rewrite_metrics:
        for outcome in outcomes:
            if outcome.status == store.COMPLETE:
                predictions = store.read_predictions(outcome.folder / store.PREDICTIONS)
                metrics = cell_metrics(predictions, prepared.tables.get(outcome.cell.dataset,
                                                                        prepared.table).num_classes)
                store.write_json(outcome.folder / store.METRICS, metrics.to_dict(orient="records"))
    if missing:
        progress.note(f"{missing} of {len(prepared.cells)} cells have no results yet; `fbench run` trains them")
    if not outcomes:
        raise FbenchError(f"suite {suite.name!r} has no stored results in {suite.output}; run it first with "
                          f"`fbench run {suite.source or 'SUITE'}`")
    return score_and_report(suite, prepared, outcomes, options, "stored results", progress)


def score_and_report(suite: Suite, prepared: Prepared, outcomes: list[CellOutcome], options: RunOptions,
                     device: str, progress: Progress) -> SuiteRun:
    """Leaderboards from the complete cells' stored predictions (a cell whose predictions cannot be read is named
    and counted as corrupt), and the report when ``options`` asks for one."""
    complete = [(o.cell, o.folder) for o in outcomes if o.status == store.COMPLETE]
    predictions, unreadable = collect_predictions(complete)
    by_key = {o.cell.key: o for o in outcomes}
    for cell, reason in unreadable:
        progress.note(f"cell {cell.name} ({cell.key}) is corrupt: {reason}")
        by_key[cell.key] = dataclasses.replace(by_key[cell.key], status=store.CORRUPT, reason=reason)
    outcomes = [by_key[o.cell.key] for o in outcomes]
    found = completeness(prepared.cells, by_key)
    if found.gaps:
        counts = ", ".join(f"{n} {state}" for state, n in found.state_counts().items())
        ranked = ("ranked anyway (--partial)" if options.partial
                  else "not ranked against complete ones (--partial ranks them)")
        progress.note(f"incomplete suite: {counts} of {len(prepared.cells)} cells; architectures with cells short "
                      f"are marked and {ranked}")
    table = prepared.table
    num_classes, label_names = table.num_classes, table.label_names
    board_completeness = found
    pairs: dict[str, tuple[str, str]] = {}
    if prepared.cross is not None:  # one leaderboard per trained-on x tested-on pair
        trained_on = {cell.view: cell.dataset for cell in prepared.cells}
        predictions, pairs = pair_predictions(predictions, trained_on)
        board_completeness = pair_completeness(found, pairs, trained_on)
        num_classes = max(t.num_classes for t in prepared.tables.values())
        label_names = CANONICAL_LABELS[:num_classes]
    leaderboards = build_leaderboards(predictions, num_classes, label_names, completeness=board_completeness,
                                      partial=options.partial)
    run = SuiteRun(suite, prepared.choice, prepared.cells, outcomes, leaderboards, prepared.budget,
                   num_classes, found, skipped_files=bad_files(table),
                   face_crops=detection_counts(table, cache_dir=options.cache_dir) or {}, plan=prepared.plan,
                   landmark_sources=landmark_counts(table, cache_dir=options.cache_dir) or {})
    if prepared.cross is not None:
        layout: CrossLayout = prepared.cross
        rows, columns = {name: i for i, name in enumerate(layout.train)}, {n: i for i, n in enumerate(layout.test)}
        run.leaderboards = sorted(leaderboards, key=lambda board: (rows.get(pairs[board.view][0], 0),
                                                                   columns.get(pairs[board.view][1], 0)))
        run.cross_layout = layout
        run.cross = cross_matrix(run.leaderboards, pairs, cell_alignments(outcomes))
        run.cross_poses = cross_per_pose(run.leaderboards, pairs)
    if options.write_report and leaderboards:
        try:
            run.report = write_suite_report(run, device)
        except OSError as error:  # the cells are kept: `fbench leaderboard` or a rerun writes the report
            raise unwritable(error.filename or suite.reports, error) from None
    return run


def suite_metrics(leaderboards: list[Leaderboard]) -> dict[str, float]:
    """The parent run's metrics: every architecture's mean accuracy per view and condition."""
    metrics = {}
    for board in leaderboards:
        for _, row in board.aggregate.iterrows():
            metrics[f"{board.view}.{row['label']}.{row['condition']}.accuracy"] = float(row["accuracy_mean"])
    return metrics


@dataclass
class EfficiencyRun:
    suite: Suite
    profiles: pd.DataFrame  # label, architecture, input, params, macs, macs_torch, latency_ms, throughput
    device: str
    report: dict[str, Path] = field(default_factory=dict)


def run_efficiency(suite: Suite, options: RunOptions | None = None, progress: Progress | None = None,
                   **changes: Any) -> EfficiencyRun:
    """Profile every architecture x variant of an ``efficiency_only`` suite; nothing is trained."""
    options = run_options(options, changes)
    progress = progress or Progress()
    device = resolve_device(options.device or suite.device)
    entries = suite.architecture_entries()
    progress.start_suite(len(entries), 0)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        progress.note(f"profiling {entry.label}")
        profile = profile_architecture(entry.name, entry.options, input_size=entry.input_size, device=str(device))
        rows.append({"label": entry.label, "architecture": entry.name,
                     "input": "x".join(map(str, profile.input_size)), "params": profile.params,
                     "macs": profile.macs, "macs_torch": profile.macs_torch, "latency_ms": profile.latency_ms,
                     "throughput": profile.throughput, "throughput_batch_size": profile.throughput_batch_size})
    run = EfficiencyRun(suite, pd.DataFrame(rows), str(device))
    if options.write_report:
        data = ReportData(suite=suite.name, title=f"{suite.name}: {suite.description or 'efficiency'}",
                          leaderboard=pd.DataFrame(), efficiency=run.profiles,
                          provenance={"device": str(device), "suite file": suite.source or "(built in Python)"})
        run.report = write_report(report_folder(Path(suite.reports), suite.name), data)
    return run
