"""One cell: train its model, predict its test part under every condition, and write its folder.

:func:`run_cell` reuses a cell whose folder holds a result; otherwise it takes the cell's lock
(:class:`fbench.run.store.CellLock`), trains the cell on its inputs (:mod:`fbench.run.inputs`), predicts the test
part clean and under each perturbation, scores the predictions and writes the folder (:mod:`fbench.run.store`),
``result.json`` last. Until then the engine keeps the cell's resume checkpoint there (``resume.pt``, written after
every epoch), so a cell killed or preempted mid-training continues from its last finished epoch when it runs
again, and says so. A NaN loss makes the cell ``failed`` with its reason; the suite goes on. A cell whose lock
another live process holds raises :class:`CellBusy` (the local executor comes back to it later), or is waited for
(cluster jobs), then reused.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from fbench.contract import ArchitectureSpec
from fbench.data.table import CANONICAL_LABELS, SampleTable
from fbench.engine import NonFiniteLossError, TrainSettings, predict_logits, predictions_frame, train_model
from fbench.engine.checkpoint import remove_resume
from fbench.engine.loop import EpochCallback
from fbench.errors import FbenchError
from fbench.registry import get_architecture
from fbench.run import store
from fbench.run.cells import Cell
from fbench.run.context import RunContext, has_subset
from fbench.run.cross import cross_targets, is_diagonal, target_test_data, trained_classes
from fbench.run.inputs import TestData, cell_inputs
from fbench.run.provenance import environment_tags
from fbench.score.alignment import RESULT_KEY, TARGET_COLUMN, Alignment, restricted_argmax
from fbench.score.metrics import condition_metrics
from fbench.suite.conditions import CLEAN, is_clean, subset_column

BUSY_POLL_SECONDS = 2.0  # how often a process waiting for another's cell looks again


@dataclass
class CellOutcome:
    cell: Cell
    folder: Path
    status: str  # complete | failed
    reused: bool
    reason: str = ""
    seconds: float = 0.0
    logged: bool = False  # a cluster job already logged the cell to MLflow


class CellBusy(Exception):
    """A cell another live process is running (it holds the cell's lock): come back to it later."""

    def __init__(self, cell: Cell, holder: store.LockHolder) -> None:
        super().__init__(f"cell {cell.name} ({cell.key}) is being run by {holder.describe()}")
        self.cell = cell
        self.holder = holder


def cell_spec(cell: Cell) -> ArchitectureSpec:
    """The architecture's spec for the cell's options, at the cell's input size."""
    return get_architecture(cell.architecture).resolve_spec(cell.options).with_input(image_size=cell.input_size[1:])


def build_model(cell: Cell, num_classes: int) -> nn.Module:
    """The cell's model, initialised from its seed."""
    torch.manual_seed(cell.seed)
    return get_architecture(cell.architecture).build(num_classes, **cell.options)


def train_settings(cell: Cell, device: torch.device, checkpoint_path: Path | None = None,
                   on_epoch: EpochCallback | None = None, resume_path: Path | None = None,
                   on_resume: Callable[[str], None] | None = None) -> TrainSettings:
    """How the engine trains the cell: its recipe, spec, seed and engine settings (and where it keeps its best
    weights and its resume checkpoint)."""
    return TrainSettings(cell.recipe, cell_spec(cell), device=device, seed=cell.seed,
                         checkpoint_path=checkpoint_path, on_epoch=on_epoch, resume_path=resume_path,
                         on_resume=on_resume, **cell.engine.model_dump())


def reused_outcome(cell: Cell, folder: Path, retry_failed: bool,
                   note: Callable[[str], None] = lambda text: None) -> CellOutcome | None:
    """The outcome of a cell whose folder already holds a sound result (a failed one only without
    ``retry_failed``); None when the cell must run, after saying why when its files are damaged."""
    damage = store.damaged_files(folder)
    if damage:
        note(f"cell {cell.name} ({cell.key}): {'; '.join(damage)}; training it again")
        return None
    previous = store.finished_result(folder)
    if previous is not None and (previous["status"] == store.COMPLETE or not retry_failed):
        return CellOutcome(cell, folder, previous["status"], reused=True, reason=previous.get("reason", ""))
    return None


@contextmanager
def claimed(cell: Cell, folder: Path, retry_failed: bool, note: Callable[[str], None] = lambda text: None,
            wait: bool = False, poll: float = BUSY_POLL_SECONDS) -> Iterator[CellOutcome | None]:
    """Claim a cell: yields its reused outcome when its folder holds a result (also one another process wrote
    while this one waited), else None while this process holds the cell's lock (released on leaving). A cell
    whose lock another live process holds raises :class:`CellBusy`, or with ``wait`` is waited for."""
    while True:
        reused = reused_outcome(cell, folder, retry_failed)
        if reused is not None:
            store.CellLock(folder).clear_stale()
            (folder / store.RESUME).unlink(missing_ok=True)  # left by a kill just after the result was written
            yield reused
            return
        lock = store.CellLock(folder)
        holder = lock.acquire()
        if holder is None:
            break
        if not wait:
            raise CellBusy(cell, holder)
        time.sleep(poll)
    try:  # checked again under the lock (finished by another process just before), and damage said once, here
        yield reused_outcome(cell, folder, retry_failed, note)
    finally:
        lock.release()


def run_cell(cell: Cell, context: RunContext, lock: bool = True, wait: bool = False) -> CellOutcome:
    """Train and evaluate one cell, or reuse it when its folder holds a result. The cell's lock is taken first
    (unless ``lock`` is False: a caller holds it); another live holder raises :class:`CellBusy`, or with ``wait``
    is waited for."""
    folder = context.folder(cell)
    if not lock:
        reused = reused_outcome(cell, folder, context.retry_failed, context.progress.note)
        return reused if reused is not None else _train_cell(cell, context, folder)
    with claimed(cell, folder, context.retry_failed, context.progress.note, wait) as reused:
        return reused if reused is not None else _train_cell(cell, context, folder)


def _train_cell(cell: Cell, context: RunContext, folder: Path) -> CellOutcome:
    started = time.perf_counter()
    store.write_json(folder / store.CONFIG, cell.to_dict())
    split = context.splits[cell.view][cell.fold]
    split.save(folder / store.SPLIT)
    try:
        predictions, history, images, aligned = train_and_predict(cell, context, folder)
    except NonFiniteLossError as error:
        outcome = CellOutcome(cell, folder, store.FAILED, reused=False, reason=str(error),
                              seconds=time.perf_counter() - started)
        store.write_json(folder / store.RESULT, result_record(outcome, context.device, folder))
        remove_resume(folder / store.RESUME)
        return outcome
    table = context.table_of(cell.dataset)
    metrics = cell_metrics(predictions, table.num_classes)
    store.write_predictions(folder / store.PREDICTIONS, predictions)
    store.write_json(folder / store.HISTORY, history)
    store.write_json(folder / store.METRICS, metrics.to_dict(orient="records"))
    outcome = CellOutcome(cell, folder, store.COMPLETE, reused=False, seconds=time.perf_counter() - started)
    record = {**result_record(outcome, context.device, folder), "images": images}
    if aligned:
        record[RESULT_KEY] = {target: alignment.to_dict() for target, alignment in aligned.items()}
    store.write_json(folder / store.RESULT, record)
    remove_resume(folder / store.RESUME)  # a finished cell keeps no resume checkpoint (hundreds of MB)
    return outcome


def cell_metrics(predictions: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Per condition (and, for a cross cell, per target dataset: a ``target`` column), the cell's metrics."""
    if TARGET_COLUMN not in predictions.columns:
        return condition_metrics(predictions, num_classes, CANONICAL_LABELS[:num_classes])
    classes = max(num_classes, int(predictions[["label", "pred"]].to_numpy().max(initial=0)) + 1)
    parts = [condition_metrics(part.drop(columns=[TARGET_COLUMN]), classes, CANONICAL_LABELS[:classes])
             .assign(**{TARGET_COLUMN: target})
             for target, part in predictions.groupby(TARGET_COLUMN, sort=False)]
    return pd.concat(parts, ignore_index=True)


def train_and_predict(cell: Cell, context: RunContext, folder: Path
                      ) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, int], dict[str, Alignment]]:
    """Train the cell, then predict its test part under every condition: (predictions, history, image counts
    of the train, val and test parts, and for a cross cell each target's label alignment). A cross cell's
    predictions carry a ``target`` column: its own test part (where it is tested on its dataset) and every
    target's images of the classes it was trained on, each scored on the classes both share."""
    table = context.table_of(cell.dataset)
    cached = context.cache(cell.input_size, cell.dataset)
    split = context.splits[cell.view][cell.fold]
    inputs = cell_inputs(cell, split, table, cached, context.device)
    assert inputs.test is not None
    model = build_model(cell, table.num_classes)
    context.progress.start_cell(cell, cell.recipe.epochs)
    settings = train_settings(cell, context.device, folder / store.CHECKPOINT, context.progress.epoch,
                              folder / store.RESUME, lambda text: context.progress.note(f"{cell.name}: {text}"))
    result = train_model(model, inputs.train, inputs.val, settings)
    targets = cross_targets(cell)
    if targets is None:
        clean, *perturbed = predict_conditions(model, cell, inputs.test, context.device,
                                               (CLEAN, *cell.perturbations))
        parts = [clean, *perturbed, *subset_predictions(cell, clean, table)]
        return pd.concat(parts, ignore_index=True), result.history, inputs.sizes(), {}
    trained = trained_classes(cell, split, table)
    aligned: dict[str, Alignment] = {}
    parts = []
    tested: list[tuple[str, TestData | None, SampleTable]] = []
    if is_diagonal(cell):  # its own test part, as cell_inputs drew it
        data, aligned[cell.dataset] = target_test_data(cell, table, cached, context.device, trained, split.test)
        tested.append((cell.dataset, data, table))
    for target in targets:
        target_table = context.table_of(target)
        data, aligned[target] = target_test_data(cell, target_table, context.cache(cell.input_size, target),
                                                 context.device, trained)
        tested.append((target, data, target_table))
    for target, data, target_table in tested:
        if data is None:  # no image of a class the model knows
            continue
        clean, *perturbed = predict_conditions(model, cell, data, context.device, (CLEAN, *cell.perturbations))
        for frame in (clean, *perturbed, *subset_predictions(cell, clean, target_table)):
            logits = frame[[c for c in frame.columns if c.startswith("logit_")]].to_numpy()
            frame = frame.assign(pred=restricted_argmax(logits, aligned[target].scored))
            parts.append(frame.assign(**{TARGET_COLUMN: target}))
    if not parts:
        raise FbenchError(f"cell {cell.name}: no dataset it is tested on shares a class with its training part "
                          f"({', '.join(CANONICAL_LABELS[i] for i in trained)}); test it on datasets that label "
                          "some of the same expressions")
    sizes = {**inputs.sizes(), "targets": sum(len(data) for _, data, _ in tested if data is not None)}
    return pd.concat(parts, ignore_index=True), result.history, sizes, aligned


def predict_conditions(model: nn.Module, cell: Cell, test: TestData, device: torch.device | str,
                       conditions: tuple[str, ...], batch_size: int | None = None) -> list[pd.DataFrame]:
    """The per-sample predictions of ``model`` on ``test``, one frame per condition, in order."""
    spec = cell_spec(cell)
    frames = []
    for condition in conditions:
        logits = predict_logits(model, test.images, spec, device=device,
                                batch_size=batch_size or cell.engine.eval_batch_size, amp=cell.engine.amp,
                                channels_last=cell.engine.channels_last,
                                condition=None if is_clean(condition) else condition, landmarks=test.landmarks,
                                sample_ids=test.sample_ids, poses=test.poses, seed=cell.seed)
        frames.append(predictions_frame(logits, test.labels, test.sample_ids, condition, poses=test.poses,
                                        subjects=test.subjects))
    return frames


def subset_predictions(cell: Cell, clean: pd.DataFrame, table: SampleTable) -> list[pd.DataFrame]:
    """For each ``subset:NAME`` condition, the clean predictions of the test samples tagged ``cond_NAME``
    (none where the dataset tags no sample: ``prepare`` says so)."""
    parts = []
    for condition in cell.subsets:
        if not has_subset(table, condition):
            continue
        column = subset_column(condition)
        tagged = set(table.frame.loc[table.frame[column].astype(bool), "sample_id"])
        rows = clean[clean["sample_id"].isin(tagged)]
        parts.append(rows.assign(condition=condition))
    return parts


def result_record(outcome: CellOutcome, device: torch.device | str, folder: Path) -> dict[str, Any]:
    """What ``result.json`` holds besides the image counts: status, timing, where and with what it ran, and the
    size and SHA-256 of the files already in ``folder``."""
    return {
        "status": outcome.status, "reason": outcome.reason, "seconds": round(outcome.seconds, 3),
        "cell": outcome.cell.name, "key": outcome.cell.key, "device": str(device),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment_tags(),
        "machine": platform.node(), "pid": os.getpid(), "files": store.file_checksums(folder),
    }
