"""The leaderboard: every number computed from the stored per-sample predictions of a suite's cells.

Per view (the main protocol, then each extra view): per-run metrics for every condition, their mean, standard
deviation and bootstrap interval over folds and seeds, paired tests of every architecture against the best one
on clean accuracy, accuracy per pose, and confusion matrices summed over runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fbench.run import store
from fbench.score.metrics import confusion_matrix, per_cell_metrics, per_group_accuracy
from fbench.score.stats import aggregate_runs, compare_architectures, mean_std_ci

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "drop_from_clean")


@dataclass
class Leaderboard:
    view: str
    aggregate: pd.DataFrame  # label, condition, <metric>_mean/_std/_ci_low/_ci_high, n_runs
    comparisons: pd.DataFrame  # compare_architectures against the best clean accuracy
    per_pose: pd.DataFrame  # label, pose, accuracy_mean, accuracy_ci_low, accuracy_ci_high, n_runs
    confusions: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    reference: str | None = None

    def clean(self) -> pd.DataFrame:
        """One row per architecture at the clean condition, best first."""
        clean = self.aggregate[self.aggregate["condition"] == "clean"]
        return clean.sort_values("accuracy_mean", ascending=False).reset_index(drop=True)


def collect_predictions(cells: list[tuple[Any, Any]]) -> pd.DataFrame:
    """Concatenate the predictions of finished cells, given as (cell, folder) pairs, with run columns."""
    frames = []
    for cell, folder in cells:
        path = folder / store.PREDICTIONS
        if not path.is_file():
            continue
        frame = store.read_predictions(path)
        frame.insert(0, "seed", cell.seed)
        frame.insert(0, "fold", cell.fold)
        frame.insert(0, "architecture", cell.label)
        frame.insert(0, "view", cell.view)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build_leaderboards(predictions: pd.DataFrame, num_classes: int, label_names: tuple[str, ...],
                       n_resamples: int = 2_000) -> list[Leaderboard]:
    """One leaderboard per view present in ``predictions``."""
    if predictions.empty:
        return []
    return [_leaderboard(str(view), frame.drop(columns="view"), num_classes, label_names, n_resamples)
            for view, frame in predictions.groupby("view", sort=False)]


def _leaderboard(view: str, predictions: pd.DataFrame, num_classes: int, label_names: tuple[str, ...],
                 n_resamples: int) -> Leaderboard:
    runs = per_cell_metrics(predictions, num_classes, label_names, by=["architecture", "fold", "seed"])
    aggregate = aggregate_runs(runs, group_by=["architecture", "condition"], metrics=list(METRICS),
                               n_resamples=n_resamples).rename(columns={"architecture": "label"})
    clean = aggregate[aggregate["condition"] == "clean"].sort_values("accuracy_mean", ascending=False)
    reference = str(clean["label"].iloc[0]) if len(clean) else None
    comparisons = pd.DataFrame()
    if reference is not None and predictions["architecture"].nunique() > 1:
        comparisons = compare_architectures(predictions, reference, condition="clean", n_resamples=n_resamples)
    return Leaderboard(view, aggregate, comparisons, _per_pose(predictions, n_resamples),
                       _confusions(predictions, num_classes, label_names), reference)


def _per_pose(predictions: pd.DataFrame, n_resamples: int) -> pd.DataFrame:
    clean = predictions[predictions["condition"] == "clean"]
    if "pose" not in clean.columns or not clean["pose"].astype(str).str.len().any():
        return pd.DataFrame()
    rows = []
    for (label, _fold, _seed), run in clean.groupby(["architecture", "fold", "seed"], sort=False):
        for _, group in per_group_accuracy(run, by="pose").iterrows():
            rows.append({"label": label, "pose": group["pose"], "accuracy": group["accuracy"]})
    per_run = pd.DataFrame(rows)
    out = []
    for (label, pose), group in per_run.groupby(["label", "pose"], sort=False):
        summary = mean_std_ci(group["accuracy"].to_numpy(), n_resamples=n_resamples)
        out.append({"label": label, "pose": pose, "accuracy_mean": summary["mean"],
                    "accuracy_ci_low": summary["ci_low"], "accuracy_ci_high": summary["ci_high"],
                    "n_runs": summary["n"]})
    return pd.DataFrame(out)


def _confusions(predictions: pd.DataFrame, num_classes: int, label_names: tuple[str, ...]
                ) -> dict[str, tuple[np.ndarray, list[str]]]:
    confusions = {}
    for label, frame in predictions.groupby("architecture", sort=False):
        confusions[str(label)] = (confusion_matrix(frame, "clean", num_classes), list(label_names))
    return confusions


def condition_frame(board: Leaderboard) -> pd.DataFrame:
    """Accuracy and drop from clean for every perturbation condition (what the occlusion and mask plots use)."""
    frame = board.aggregate[~board.aggregate["condition"].isin(["clean", "pose"])]
    columns = ["label", "condition", "accuracy_mean", "accuracy_ci_low", "accuracy_ci_high", "drop_from_clean_mean"]
    return frame[columns].reset_index(drop=True)


def efficiency_frame(board: Leaderboard, profiles: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Params and MACs (from ``profiles`` by label) beside clean accuracy, for the accuracy-cost plots."""
    rows = []
    for _, row in board.clean().iterrows():
        profile = profiles.get(str(row["label"]))
        if profile:
            rows.append({"label": row["label"], "params": profile["params"], "macs": profile["macs"],
                         "accuracy_mean": row["accuracy_mean"]})
    return pd.DataFrame(rows)
