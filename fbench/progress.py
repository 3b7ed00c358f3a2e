"""The terminal side of a suite run: progress bars (cells and the running cell's epochs, with ETA) on a terminal,
plain flushed lines in a log (:func:`run_progress` picks), notes, and the leaderboard as a rich table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress  # beside fbench.run.context.Progress, the run's hooks
from rich.table import Table

from fbench.report.cross import matrix_table
from fbench.report.tables import SUMMARY_COLUMNS, ReportData, format_macs, format_params, leaderboard_table
from fbench.run import store
from fbench.run.cell import CellOutcome
from fbench.run.context import Progress
from fbench.suite.schema import LEAKY_LABEL


class RichProgressBars(Progress):
    """The run's :class:`~fbench.run.context.Progress` hooks as two progress bars: the suite's cells and the
    running cell's epochs; notes printed above them."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.bars = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.cells_task: Any = None
        self.epochs_task: Any = None
        self.start_suite = self._start_suite
        self.start_cell = self._start_cell
        self.epoch = self._epoch
        self.end_cell = self._end_cell
        self.note = self._note

    def __enter__(self) -> RichProgressBars:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def _start_suite(self, total: int, finished: int) -> None:
        self.cells_task = self.bars.add_task("cells", total=total)
        if finished:
            self.console.print(f"{finished} of {total} cells already finished: reusing them")

    def _start_cell(self, cell: Any, epochs: int) -> None:
        if self.epochs_task is not None:
            self.bars.remove_task(self.epochs_task)
        self.epochs_task = self.bars.add_task(f"  {cell.name} epochs", total=epochs)

    def _epoch(self, record: dict[str, Any]) -> None:
        if self.epochs_task is not None:
            text = f"val acc {record['val_accuracy']:.3f}" if record.get("val_accuracy") is not None else ""
            self.bars.update(self.epochs_task, advance=1, description=f"  epoch {record.get('epoch')} {text}")

    def _end_cell(self, outcome: CellOutcome) -> None:
        if self.cells_task is not None:
            self.bars.update(self.cells_task, advance=1)
        if outcome.status == "failed" and not outcome.reused:
            self.console.print(f"[bold red]cell {outcome.cell.name} failed:[/] {outcome.reason}", markup=True)
        elif not outcome.reused:
            self.console.print(f"cell {outcome.cell.name} done in {outcome.seconds:.0f} s")

    def _note(self, text: str) -> None:
        style = "bold yellow" if text.startswith("SYNTHETIC") else None
        self.console.print(text, style=style, markup=False)


def duration_text(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def clean_test_accuracy(folder: Path) -> float | None:
    """A finished cell's clean test accuracy from its ``metrics.json``; None where the file or the row is missing."""
    path = folder / store.METRICS
    if not path.is_file():
        return None
    try:
        rows = store.read_json(path)
    except (OSError, ValueError):
        return None
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("condition") == "clean" and row.get("accuracy") is not None:
            return float(row["accuracy"])
    return None


class LineProgress(Progress):
    """The run's :class:`~fbench.run.context.Progress` hooks as plain lines, each flushed, for logs (batch jobs,
    nohup, CI) where bars would not show: one line per epoch of the running cell (epoch/total, train loss,
    validation accuracy, training images per second, the cell's ETA) and one per finished cell (its time, clean
    test accuracy, k of n cells)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.total = 0
        self.ended = 0
        self.cell_name = ""
        self.cell_epochs = 0
        self.epoch_seconds: list[float] = []
        self.start_suite = self._start_suite
        self.start_cell = self._start_cell
        self.epoch = self._epoch
        self.end_cell = self._end_cell
        self.note = self._line

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.console.file.flush()

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()

    def _start_suite(self, total: int, finished: int) -> None:
        self.total, self.ended = total, 0
        self._line(f"suite: {total} cells" + (f", {finished} already finished: reusing them" if finished else ""))

    def _start_cell(self, cell: Any, epochs: int) -> None:
        self.cell_name, self.cell_epochs, self.epoch_seconds = cell.name, int(epochs), []
        self._line(f"cell {self.ended + 1} of {self.total}: {cell.name} training, {epochs} epochs")

    def _epoch(self, record: dict[str, Any]) -> None:
        epoch = int(record.get("epoch") or len(self.epoch_seconds) + 1)
        parts = [f"{self.cell_name} epoch {epoch}/{self.cell_epochs}"]
        details = []
        if record.get("train_loss") is not None:
            details.append(f"train loss {float(record['train_loss']):.4f}")
        if record.get("val_accuracy") is not None:
            details.append(f"val acc {100 * float(record['val_accuracy']):.1f}%")
        if record.get("images_per_second") is not None:
            details.append(f"{float(record['images_per_second']):,.0f} img/s")
        if record.get("seconds") is not None:
            self.epoch_seconds.append(float(record["seconds"]))
            left = max(0, self.cell_epochs - epoch)
            mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
            details.append(f"ETA {duration_text(mean * left)}" if left else "training done")
        self._line(": ".join([parts[0], ", ".join(details)]) if details else parts[0])

    def _end_cell(self, outcome: CellOutcome) -> None:
        self.ended += 1
        if outcome.reused:
            return
        where = f"cell {self.ended} of {self.total}"
        if outcome.status == store.FAILED:
            self._line(f"{where} FAILED: {outcome.cell.name} after {duration_text(outcome.seconds)}: {outcome.reason}")
            return
        accuracy = clean_test_accuracy(outcome.folder)
        text = f"{where} done: {outcome.cell.name} in {duration_text(outcome.seconds)}"
        if accuracy is not None:
            text += f", clean test acc {100 * accuracy:.1f}%"
        self._line(text)


def run_progress(console: Console) -> RichProgressBars | LineProgress:
    """Progress bars where ``console`` is a terminal, plain lines (a log) where it is not."""
    return RichProgressBars(console) if console.is_terminal else LineProgress(console)


# Narrower headers for the terminal's summary table (SUMMARY_COLUMNS: the leaderboard's columns that are not
# conditions).
SHORT_HEADERS = {"rank": "#", "clean acc % (mean ± std [CI])": "clean acc %", "balanced acc %": "bal. acc",
                 "macro-F1 %": "macro-F1", "sig. vs ref": "sig."}


def _table(title: str, frame: Any, caption: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold", no_wrap=column in ("clean acc %", "architecture"))
    for _, row in frame.iterrows():
        table.add_row(*(str(v) for v in row.tolist()))
    return table


def print_cross(console: Console, run: Any) -> None:
    """A cross-dataset run's matrix per architecture (rows trained on, columns tested on; each entry clean
    accuracy % with its interval over the chance level of its scored classes), the images left out, failures."""
    matrix = run.cross
    if run.dataset.synthetic:
        console.print("SYNTHETIC DATA: procedurally rendered faces, not a real dataset", style="bold yellow")
    for label in dict.fromkeys(matrix["label"]):
        frame = matrix_table(matrix, label).rename(columns=lambda c: c if c in set(matrix["test"]) else "trained on")
        for column in frame.columns[1:]:  # two lines per entry, so that the table stays narrow
            frame[column] = frame[column].map(lambda text: str(text).replace("; ", "\n").replace(", ", "-"))
        table = _table(f"{run.suite.name}: {label}, accuracy % by trained on (rows) x tested on (columns) "
                       f"({run.budget} budget)", frame,
                       caption="clean accuracy %, mean over runs \\[hierarchical bootstrap 95% CI]; chance: one over "
                               "the scored classes" + ("; SYNTHETIC DATA" if run.dataset.synthetic else ""))
        console.print(table)
    clean = matrix[(matrix["condition"] == "clean") & (matrix["dropped"] > 0)].drop_duplicates(["train", "test"])
    for _, row in clean.iterrows():
        dropped = ", ".join(f"{name} {n}" for name, n in row["dropped_by_class"].items())
        console.print(f"{row['train']} -> {row['test']}: {row['dropped']} image(s) left out ({dropped}): classes "
                      f"the model was not trained on; scored on {len(row['scored_classes'])} classes", markup=False)
    plan = getattr(run, "plan", None)
    for entry in plan.limited() if plan is not None else []:
        console.print(f"NOT TRAINED {entry.label} on {entry.view}: budget-limited on this device ({entry.limited})",
                      style="yellow", markup=False)
    for gap in run.completeness.gaps:
        console.print(f"{gap.state.upper()} {gap.name} ({gap.key}): {gap.reason}", style="red", markup=False)
    if matrix.empty:
        console.print("no finished cells: nothing to show yet")


def print_leaderboards(console: Console, run: Any) -> None:
    """Each view's leaderboard as a table, failures under it, and the synthetic warning when it applies (a
    cross-dataset run: its matrix, :func:`print_cross`)."""
    if getattr(run, "cross", None) is not None:
        print_cross(console, run)
        return
    if run.dataset.synthetic:
        console.print("SYNTHETIC DATA: procedurally rendered faces, not a real dataset", style="bold yellow")
    leaky_views = getattr(run.suite, "leaky_views", None)  # a Suite; stand-ins without it have no leaky view
    leaky = leaky_views(getattr(run.dataset, "fallback", False)) if leaky_views is not None else []
    for board in run.leaderboards:
        data = ReportData(suite=run.suite.name, title=run.suite.name, leaderboard=board.aggregate,
                          comparisons=board.comparisons, cells_per_architecture=board.cells,
                          incomplete=board.incomplete, partial=board.partial)
        frame = leaderboard_table(data)
        title = f"{run.suite.name}: {board.view} ({run.budget} budget)"
        if board.view in leaky:
            title += f" — {LEAKY_LABEL}"
        summary = frame[[c for c in frame.columns if c in SUMMARY_COLUMNS]].rename(columns=SHORT_HEADERS)
        for column in ("bal. acc", "macro-F1"):  # means only here; the report has their spread
            if column in summary:
                summary[column] = summary[column].map(lambda text: str(text).split(" ±")[0])
        if "cells" in summary:  # "2/3", not "2 of 3": the table then fits 80 columns without wrapping
            summary["cells"] = summary["cells"].map(lambda text: str(text).replace(" of ", "/"))
        caption = "in %; clean acc: mean ± std over runs \\[hierarchical bootstrap 95% CI over runs and test images]"
        if getattr(run, "num_classes", None):
            caption += f"; chance: {100 / run.num_classes:.1f}"
        if "sig." in summary:
            caption += "; sig.: paired test against ref on unique test images (Holm)"
        if run.dataset.synthetic:
            caption += "; SYNTHETIC DATA" + (" (stand-in: no dataset location was given)"
                                             if getattr(run.dataset, "fallback", False) else "")
        if board.view in leaky:
            caption += f"; {LEAKY_LABEL} (the paper's own protocol): optimistic, not comparable with clean suites"
        if board.incomplete:
            caption += ("; INCOMPLETE: " + ", ".join(f"{label} {cells}" for label, cells in board.incomplete.items())
                        + ("; ranked anyway (--partial)" if board.partial else "; not ranked (--partial ranks them)"))
        console.print(_table(title, summary, caption=caption))
        plan = getattr(run, "plan", None)
        for entry in plan.limited(board.view) if plan is not None else []:
            rate = entry.train_per_s / entry.copies
            needs = f"; a cell trained as the others would take about {duration_text(entry.needed_seconds)}"
            console.print(f"NOT RANKED {entry.label}: budget-limited on this device ({rate:.1f} training images/s"
                          f"{needs if entry.needed_seconds else ''}; the report says more)",
                          style="yellow", markup=False, soft_wrap=True)
        conditions = [c for c in frame.columns if c not in SUMMARY_COLUMNS]
        if conditions:
            # one row per condition, one column per architecture: stays narrow as conditions grow
            by_condition = frame.set_index("architecture")[conditions].T.reset_index(names="condition")
            console.print(_table(f"{board.view}: accuracy % (change from clean, points)", by_condition))
    for gap in run.completeness.gaps:
        console.print(f"{gap.state.upper()} {gap.name} ({gap.key}): {gap.reason}", style="red", markup=False)
    if not run.leaderboards:
        console.print("no finished cells: nothing to rank yet")


def print_efficiency(console: Console, run: Any) -> None:
    """The profiles of an efficiency suite as a table (MACs are multiply-accumulates, not FLOPs)."""
    table = Table(title=f"{run.suite.name}: parameters, MACs and speed on {run.device}")
    for column in ("architecture", "input", "params", "MACs", "latency (batch 1)", "throughput"):
        table.add_column(column)
    for _, row in run.profiles.iterrows():
        table.add_row(str(row["label"]), str(row["input"]), format_params(row["params"]), format_macs(row["macs"]),
                      f"{row['latency_ms']:.2f} ms",
                      f"{row['throughput']:,.0f} img/s (batch {row['throughput_batch_size']})")
    console.print(table)
    if run.report:
        console.print(f"report: {run.report.get('html')}")
