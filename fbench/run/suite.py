"""Running a prepared suite's cells through an executor, each cell's folder written atomically, finished cells
reused; and the stored outcomes of a suite whose cells ran before (for rescoring).

A cell that fails (a NaN loss) is recorded as failed with its reason; the other cells go on. After Ctrl-C,
SIGTERM or ``kill -9`` the same command resumes: the cell that was running continues from its last finished epoch
(its resume checkpoint), so at most one epoch is lost. Several processes
running one suite at once split its cells through the cells' locks (:class:`fbench.run.store.CellLock`).
Scoring, reports and tracking are not this module's: :mod:`fbench.pipeline` composes them around :func:`execute`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from fbench.data.files import unwritable
from fbench.run import store
from fbench.run.cell import CellOutcome
from fbench.run.cells import Cell
from fbench.run.context import Prepared, Progress, RunContext, RunOptions
from fbench.run.executors import EXECUTORS
from fbench.run.jobs import CellRunner
from fbench.suite.schema import Suite


def execute(suite: Suite, prepared: Prepared, options: RunOptions, progress: Progress, device: torch.device,
            on_done: Callable[[CellOutcome], None] = lambda outcome: None,
            job_logger: Callable[[CellOutcome], bool] | None = None) -> list[CellOutcome]:
    """Run every cell of ``prepared`` (reusing finished ones) with the executor ``options`` names; ``on_done`` sees
    each outcome as it comes, and cluster jobs log their own cell through ``job_logger``."""
    context = RunContext(suite, prepared.table, Path(suite.output), device, prepared.splits, options.cache_dir,
                         options.retry_failed, progress, tables=dict(prepared.tables))
    adopt_format1_folders(Path(suite.output), prepared.cells, progress.note)
    finished = sum(1 for cell in prepared.cells if store.finished_result(context.folder(cell)) is not None
                   and not store.damaged_files(context.folder(cell)))
    progress.start_suite(len(prepared.cells), finished)

    def done(outcome: CellOutcome) -> None:
        progress.end_cell(outcome)
        on_done(outcome)

    executor = EXECUTORS.get(options.executor)
    return executor.run(prepared.cells, CellRunner(context, suite, options, job_logger), done)


def stored_outcomes(suite: Suite, prepared: Prepared, progress: Progress) -> tuple[list[CellOutcome], int]:
    """The outcomes of the cells that finished before (complete, failed, or corrupt: files that fail their
    check, each named), and how many have no result yet."""
    adopt_format1_folders(Path(suite.output), prepared.cells, progress.note)
    outcomes = []
    missing = 0
    for cell in prepared.cells:
        folder = Path(suite.output) / cell.suite / cell.key
        damage = store.damaged_files(folder)
        if damage:
            reason = "; ".join(damage)
            progress.note(f"cell {cell.name} ({cell.key}) is corrupt: {reason}; left out (`fbench run` trains it "
                          "again)")
            outcomes.append(CellOutcome(cell, folder, store.CORRUPT, reused=True, reason=reason))
            continue
        previous = store.finished_result(folder)
        if previous is None:
            missing += 1
            continue
        outcomes.append(CellOutcome(cell, folder, previous["status"], reused=True, reason=previous.get("reason", "")))
    return outcomes, missing


def adopt_format1_folders(output: Path, cells: list[Cell], note: Callable[[str], None]) -> int:
    """Move cell folders stored under format-1 keys (which hashed the dataset's absolute path) to the cells' keys
    now (which hash its content), so that results from before the change are reused; returns how many moved."""
    moved = 0
    for cell in cells:
        folder = output / cell.suite / cell.key
        old = output / cell.suite / cell.format1_key
        if folder.exists() or not old.is_dir():
            continue
        try:
            os.replace(old, folder)
        except OSError as error:
            raise unwritable(folder, error) from None
        store.write_json(folder / store.CONFIG, cell.to_dict())
        record = store.finished_result(folder)
        if record is not None:
            store.write_json(folder / store.RESULT, {**record, "key": cell.key})
        moved += 1
    if moved:
        note(f"moved {moved} cell folder(s) of {output / cells[0].suite} to this version's keys (the dataset's "
             "content, not its path)")
    return moved
