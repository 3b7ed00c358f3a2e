"""The cross-dataset report: a trained-on x tested-on matrix per architecture, its heat map, each cell's scored
classes, images left out and drop from in-dataset accuracy, written as ``report.md`` and ``report.html`` at the top
of the report folder (each pair's full leaderboard report lies under ``views/<train>-to-<test>/``).

Tables are plain DataFrames (:func:`matrix_table`, :func:`cells_table`) shared by the report and the terminal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fbench.data.files import write_atomic
from fbench.report.document import (
    SYNTHETIC_BANNER,
    Block,
    failures_blocks,
    html_document,
    markdown_document,
    png_bytes,
)
from fbench.report.plots import plot_cross_matrix
from fbench.report.tables import order_poses
from fbench.suite.conditions import CLEAN

HEAT_MAP_FILE = "cross_matrix.png"
CORNER = "trained on ↓ / tested on →"


@dataclass
class CrossReportData:
    """What the cross-dataset report shows.

    Attributes:
        matrix: :func:`fbench.score.cross.cross_matrix`'s frame.
        datasets: one line per dataset of the matrix: its name, where it lives, synthetic or not.
        left_out: datasets of the suite left out of the matrix, with why.
        pair_reports: pair view name -> the relative path of its full report.
        per_pose: clean accuracy per pose of each pair (:func:`fbench.score.cross.cross_per_pose`).
        failures: cells not in the matrix (state, cell, key, label, reason).
    """

    suite: str
    title: str
    matrix: pd.DataFrame
    datasets: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    synthetic: bool = False
    synthetic_note: str = ""
    budget: str | None = None
    budget_cuts: list[str] = field(default_factory=list)
    pair_reports: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    per_pose: pd.DataFrame = field(default_factory=pd.DataFrame)  # fbench.score.cross.cross_per_pose


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}" if value is not None and math.isfinite(float(value)) else "–"


def entry_text(row: Mapping[str, Any], chance: bool = True, interval: bool = True) -> str:
    """``71.2 [65.0, 77.1]`` (accuracy % with its interval), ``; chance 14.3`` beside it."""
    text = _pct(row["accuracy_mean"])
    if interval:
        text += f" [{_pct(row['accuracy_ci_low'])}, {_pct(row['accuracy_ci_high'])}]"
    if chance:
        text += f"; chance {_pct(row['chance'])}"
    return text


def _ordered(matrix: pd.DataFrame, column: str) -> list[str]:
    return list(dict.fromkeys(matrix[column].astype(str)))


def matrix_table(matrix: pd.DataFrame, label: str, condition: str = CLEAN, chance: bool = True,
                 interval: bool = True) -> pd.DataFrame:
    """One architecture's matrix under ``condition``: a row per dataset trained on, a column per dataset tested
    on, each entry :func:`entry_text`; "–" where a pair has no result."""
    rows = matrix[(matrix["label"] == label) & (matrix["condition"] == condition)]
    tests = _ordered(matrix, "test")
    table = []
    for train in _ordered(matrix, "train"):
        line = {CORNER: train}
        for test in tests:
            found = rows[(rows["train"] == train) & (rows["test"] == test)]
            line[test] = entry_text(found.iloc[0], chance, interval) if len(found) else "–"
        table.append(line)
    return pd.DataFrame(table, columns=[CORNER, *tests])


def _points(value: Any) -> str:
    return f"{100 * float(value) + 0.0:+.1f}" if value is not None and math.isfinite(float(value)) else "–"


def cells_table(matrix: pd.DataFrame, condition: str = CLEAN) -> pd.DataFrame:
    """Every cell of the matrix under ``condition``: accuracy with its interval, chance on the scored classes,
    the in-dataset (diagonal) accuracy of the training dataset and the change from it in points, the scored
    classes, images scored and images left out (classes the model was not trained on), runs."""
    rows = matrix[matrix["condition"] == condition]
    table = []
    for _, row in rows.iterrows():
        dropped = ", ".join(f"{name} {n}" for name, n in row["dropped_by_class"].items())
        table.append({
            "architecture": row["label"], "trained on": row["train"], "tested on": row["test"],
            "accuracy %": entry_text(row, chance=False), "chance %": _pct(row["chance"]),
            "in-dataset %": _pct(row["in_dataset"]),
            "change from in-dataset": ("(diagonal)" if row["train"] == row["test"]
                                       else _points(-row["drop_from_in_dataset"])),
            "scored classes": f"{len(row['scored_classes'])}: {', '.join(row['scored_classes'])}",
            "images scored": f"{int(row['n_images']):,}",
            "left out": f"{int(row['dropped']):,}" + (f" ({dropped})" if dropped else ""),
            "runs": int(row["n_runs"]),
        })
    return pd.DataFrame(table)


def pose_table(per_pose: pd.DataFrame, label: str) -> pd.DataFrame:
    """One architecture's clean accuracy % per pose: a row per trained on -> tested on pair, a column per pose
    (yaw order), each entry the mean with its interval; empty without poses."""
    rows = per_pose[per_pose["label"] == label] if not per_pose.empty else per_pose
    if rows.empty:
        return pd.DataFrame()
    poses = order_poses(rows["pose"].unique())
    table = []
    for (train, test), pair in rows.groupby(["train", "test"], sort=False):
        line = {"trained on → tested on": f"{train} → {test}"}
        by_pose = pair.set_index("pose")
        for pose in poses:
            line[str(pose)] = entry_text(by_pose.loc[pose], chance=False) if pose in by_pose.index else "–"
        table.append(line)
    return pd.DataFrame(table)


def _blocks(data: CrossReportData, has_plot: bool, plot_error: str) -> list[Block]:
    matrix = data.matrix
    blocks: list[Block] = [("h", 1, data.title)]
    if data.synthetic:
        note = f" {data.synthetic_note.strip()}" if data.synthetic_note.strip() else ""
        blocks.append(("banner", f"{SYNTHETIC_BANNER}.{note} Numbers here say nothing about real faces."))
    blocks.append(("p", "Each model is trained on one dataset (rows: trained on) and tested on every dataset of the "
                        "matrix (columns: tested on): a dataset also trained on is tested on its own protocol's "
                        "test part (the diagonal, in-dataset), the others whole or on their official test split. "
                        "Each cell is scored on the classes both datasets share: images of a class the model was "
                        "not trained on are left out and counted, predictions are the best of the scored classes, "
                        "and chance is one over their number."))
    if data.datasets:
        blocks.append(("list", list(data.datasets)))
    if data.left_out:
        blocks.append(("p", "Left out of the matrix: " + "; ".join(f"{name} ({why})"
                                                                   for name, why in data.left_out.items()) + "."))
    blocks.append(("h", 2, "Budget"))
    blocks.append(("p", f"Budget: {data.budget or '(unnamed)'}. " + ("It cut:" if data.budget_cuts
                                                                      else "It cut nothing.")))
    if data.budget_cuts:
        blocks.append(("list", [str(c) for c in data.budget_cuts]))
    labels = _ordered(matrix, "label") if not matrix.empty else []
    for label in labels:
        blocks.append(("h", 2, f"{label}: accuracy % by trained on (rows) × tested on (columns)"
                       + (" (synthetic data)" if data.synthetic else "")))
        blocks.append(("table", matrix_table(matrix, label)))
        blocks.append(("p", "Mean clean accuracy % over runs (folds x seeds) [hierarchical bootstrap 95% CI over "
                            "runs and test images]; chance: one over the number of scored classes."))
    if not labels:
        blocks.append(("p", "No results."))
    if has_plot or plot_error:
        blocks.append(("h", 2, "Heat map: trained on × tested on"))
        blocks.append(("image", "cross_matrix", "Clean accuracy % by trained on (rows) and tested on (columns)")
                      if has_plot else ("p", f"This plot could not be drawn: {plot_error}"))
    if not matrix.empty:
        blocks.append(("h", 2, "Cells: scored classes, images left out, drop from in-dataset accuracy"))
        blocks.append(("table", cells_table(matrix)))
        blocks.append(("p", "change from in-dataset: the cell's accuracy minus the training dataset's own "
                            "(diagonal) accuracy, in points (-12.3 is a drop of 12.3); – where the training dataset "
                            "is not tested on. left out: target images of classes the model was not trained on "
                            "(by class), each test image counted once."))
    poses = [(label, pose_table(data.per_pose, label)) for label in labels]
    if any(not table.empty for _, table in poses):
        blocks.append(("h", 2, "By head pose: trained on → tested on"))
        for label, table in poses:
            if not table.empty:
                blocks.append(("h", 3, label))
                blocks.append(("table", table))
        blocks.append(("p", "Clean accuracy % per pose of the images tested on, mean over runs [hierarchical "
                            "bootstrap 95% CI]; a synthetic row or column says how far the rendered faces carry to "
                            "real ones (and back) at each pose."))
    conditions = [c for c in dict.fromkeys(matrix["condition"]) if c != CLEAN] if not matrix.empty else []
    if conditions:
        blocks.append(("h", 2, "Under each condition: trained on × tested on"))
        for condition in conditions:
            for label in labels:
                blocks.append(("h", 3, f"{label}, {condition}"))
                blocks.append(("table", matrix_table(matrix, label, condition, chance=False)))
    if data.pair_reports:
        blocks.append(("h", 2, "Each pair's leaderboard"))
        blocks.append(("list", [f"{view}: {path}" for view, path in data.pair_reports.items()]))
    blocks += failures_blocks("Cells not in the matrix", data.failures)
    blocks.append(("h", 2, "Provenance"))
    blocks.append(("pre", "\n".join(f"{key}: {value}" for key, value in data.provenance.items())
                   or "(none recorded)"))
    return blocks


def write_cross_report(out_dir: Path, data: CrossReportData) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the heat map into ``out_dir``; returns their paths (``markdown``,
    ``html``, ``cross_matrix``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    error = ""
    try:
        fig = plot_cross_matrix(data.matrix, data.synthetic)
    except Exception as exc:  # a plot bug must not cost the whole report; it is reported loudly instead
        error = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"cross-dataset heat map failed: {error}", RuntimeWarning, stacklevel=2)
        fig = None
    if fig is not None:
        images["cross_matrix"] = png_bytes(fig)
        paths["cross_matrix"] = out_dir / HEAT_MAP_FILE
        write_atomic(paths["cross_matrix"], images["cross_matrix"])
    blocks = _blocks(data, bool(images), error)
    paths["markdown"] = out_dir / "report.md"
    paths["html"] = out_dir / "report.html"
    write_atomic(paths["markdown"], markdown_document(blocks, {"cross_matrix": HEAT_MAP_FILE}).encode("utf-8"))
    write_atomic(paths["html"], html_document(blocks, data.title, images).encode("utf-8"))
    return paths


def dataset_lines(choices: Mapping[str, Any], sizes: Mapping[str, int]) -> list[str]:
    """``kdef: 4,900 images at /data/KDEF (from --data kdef=...)`` for each dataset of the matrix."""
    lines = []
    for name, choice in choices.items():
        size = f"{sizes[name]:,} images" if name in sizes else "images unknown"
        lines.append(f"{name}: {size} at {choice.root} (from {choice.origin})"
                     + (" — SYNTHETIC" if choice.synthetic else ""))
    return lines


def pair_report_paths(views: Sequence[str]) -> dict[str, str]:
    """Each pair view's report, relative to the cross report."""
    return {view: f"views/{view}/report.md" for view in views}
