"""The leaderboard: every number computed from the stored per-sample predictions of a suite's cells.

Per view (the main protocol, then each extra view): per-run metrics for every condition, their mean and standard
deviation over folds and seeds with a hierarchical bootstrap interval over runs and test images, paired tests
on unique test images of every architecture against the best one on clean accuracy, accuracy per pose, and
confusion matrices summed over runs. An architecture with cells missing
(see :mod:`fbench.score.completeness`) is shown but neither chosen as the reference nor compared, unless the
board is ``partial``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fbench.errors import FbenchError
from fbench.run import store
from fbench.score.completeness import Completeness
from fbench.score.metrics import confusion_matrix
from fbench.score.stats import aggregate_predictions, compare_architectures

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "drop_from_clean")


@dataclass
class Leaderboard:
    view: str
    aggregate: pd.DataFrame  # label, condition, <metric>_mean/_std/_ci_low/_ci_high, n_runs
    comparisons: pd.DataFrame  # compare_architectures against the best clean accuracy
    per_pose: pd.DataFrame  # label, pose, accuracy_mean, accuracy_ci_low, accuracy_ci_high, n_runs
    confusions: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    reference: str | None = None
    cells: dict[str, str] = field(default_factory=dict)  # label -> "n of N" cells complete
    incomplete: dict[str, str] = field(default_factory=dict)  # label -> "cells n of N", for those with a cell short
    partial: bool = False  # incomplete architectures ranked and compared anyway (--partial)

    def clean(self) -> pd.DataFrame:
        """One row per architecture at the clean condition, best first."""
        clean = self.aggregate[self.aggregate["condition"] == "clean"]
        return clean.sort_values("accuracy_mean", ascending=False).reset_index(drop=True)


def collect_predictions(cells: list[tuple[Any, Any]]) -> tuple[pd.DataFrame, list[tuple[Any, str]]]:
    """The predictions of finished cells, given as (cell, folder) pairs, concatenated with run columns; and the
    cells whose predictions cannot be read, with why (they are left out)."""
    frames = []
    unreadable = []
    for cell, folder in cells:
        try:
            frame = store.read_predictions(folder / store.PREDICTIONS)
        except FbenchError as error:
            unreadable.append((cell, str(error)))
            continue
        frame.insert(0, "seed", cell.seed)
        frame.insert(0, "fold", cell.fold)
        frame.insert(0, "architecture", cell.label)
        frame.insert(0, "view", cell.view)
        frames.append(frame)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), unreadable


def build_leaderboards(predictions: pd.DataFrame, num_classes: int, label_names: tuple[str, ...],
                       n_resamples: int = 2_000, completeness: Completeness | None = None,
                       partial: bool = False) -> list[Leaderboard]:
    """One leaderboard per view present in ``predictions``; with ``completeness``, architectures with cells short
    are marked and, unless ``partial``, not ranked against complete ones."""
    if predictions.empty:
        return []
    found = completeness or Completeness()
    return [_leaderboard(str(view), frame.drop(columns="view"), num_classes, label_names, n_resamples,
                         found.counts(str(view)), found.incomplete(str(view)), partial)
            for view, frame in predictions.groupby("view", sort=False)]


def _leaderboard(view: str, predictions: pd.DataFrame, num_classes: int, label_names: tuple[str, ...],
                 n_resamples: int, cells: dict[str, str], incomplete: dict[str, str], partial: bool) -> Leaderboard:
    aggregate = aggregate_predictions(predictions, num_classes, group_by=["architecture"], metrics=METRICS,
                                      n_resamples=n_resamples)
    aggregate = aggregate.rename(columns={"architecture": "label"})
    ranked = predictions if partial else predictions[~predictions["architecture"].isin(list(incomplete))]
    if partial and incomplete:  # paired tests need the same test images: the folds every architecture has
        folds = ranked.groupby("architecture")["fold"].unique()
        common = set.intersection(*(set(values) for values in folds))
        ranked = ranked[ranked["fold"].isin(common)]
    clean = aggregate[(aggregate["condition"] == "clean") & aggregate["label"].isin(ranked["architecture"].unique())]
    clean = clean.sort_values("accuracy_mean", ascending=False)
    reference = str(clean["label"].iloc[0]) if len(clean) else None
    comparisons = pd.DataFrame()
    if reference is not None and ranked["architecture"].nunique() > 1:
        comparisons = compare_architectures(ranked, reference, condition="clean", n_resamples=n_resamples)
    return Leaderboard(view, aggregate, comparisons, _per_pose(predictions, num_classes, n_resamples),
                       _confusions(predictions, num_classes, label_names), reference, cells, incomplete, partial)


def _per_pose(predictions: pd.DataFrame, num_classes: int, n_resamples: int) -> pd.DataFrame:
    """Clean accuracy per architecture and pose: mean over runs, hierarchical bootstrap interval."""
    clean = predictions[predictions["condition"] == "clean"]
    if "pose" not in clean.columns or not clean["pose"].astype(str).str.len().any():
        return pd.DataFrame()
    per_pose = aggregate_predictions(clean, num_classes, group_by=["architecture", "pose"], metrics=["accuracy"],
                                     n_resamples=n_resamples)
    columns = ["architecture", "pose", "accuracy_mean", "accuracy_ci_low", "accuracy_ci_high", "n_runs"]
    return per_pose[columns].rename(columns={"architecture": "label"})


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
