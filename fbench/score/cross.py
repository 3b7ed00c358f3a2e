"""Cross-dataset scoring: which classes a trained-on x tested-on cell scores, and the matrix of its accuracies.

Datasets label different sets of expressions (KDEF has no contempt, CK+ has). A model is trained on the classes of
its training part; each target is scored on the classes both share (:mod:`fbench.score.alignment`): target images of a
class the model was not trained on are left out and counted, the model's prediction is the best of the scored
classes, and chance is one over their number.

A cross cell's predictions carry a ``target`` column (the dataset tested on). :func:`pair_predictions` turns them
into one leaderboard view per (trained on, tested on) pair, so every pair gets the intervals, conditions and
per-pose breakdown of an ordinary leaderboard; :func:`cross_matrix` lays those boards out as the matrix, with each
cell's scored classes, dropped images, chance level and drop from in-dataset (diagonal) accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fbench.data.table import CANONICAL_LABELS
from fbench.run import store
from fbench.score.alignment import RESULT_KEY, TARGET_COLUMN
from fbench.score.completeness import Completeness
from fbench.score.leaderboard import Leaderboard

PAIR_SEPARATOR = "-to-"  # a pair's view name: kdef-to-jaffe


def name_part(dataset: str) -> str:
    """A dataset name as one segment of a folder or metric name: ``imagefolder/ckplus`` -> ``imagefolder-ckplus``."""
    return dataset.replace("/", "-")


def pair_view(train: str, test: str) -> str:
    """The leaderboard view of the models trained on ``train``, tested on ``test`` (one path segment)."""
    return f"{name_part(train)}{PAIR_SEPARATOR}{name_part(test)}"


def pair_predictions(predictions: pd.DataFrame, trained_on: Mapping[str, str]
                     ) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    """Concatenated cross-cell predictions (``view`` = the cell's view, ``target`` = the dataset tested on) with
    ``view`` set to each (trained on, tested on) pair; ``trained_on`` maps a cell view to its training dataset.
    Returns the frame (without ``target``) and each pair view's (train, test)."""
    if predictions.empty:
        return predictions, {}
    train = predictions["view"].map(lambda view: trained_on.get(str(view), str(view))).astype(str)
    test = predictions[TARGET_COLUMN].astype(str)
    views = [pair_view(a, b) for a, b in zip(train, test)]
    pairs = {view: (a, b) for view, a, b in zip(views, train, test)}
    frame = predictions.drop(columns=[TARGET_COLUMN]).assign(view=views)
    return frame, pairs


def pair_completeness(found: Completeness, pairs: Mapping[str, tuple[str, str]],
                      trained_on: Mapping[str, str]) -> Completeness:
    """``found`` (per cell view) restated per pair view: each pair has the cells of its training dataset."""
    view_of = {train: view for view, train in trained_on.items()}
    remapped = Completeness(gaps=list(found.gaps))
    for pair, (train, _) in pairs.items():
        for (view, label), total in found.expected.items():
            if view == view_of.get(train, train):
                remapped.expected[(pair, label)] = total
                remapped.complete[(pair, label)] = found.complete.get((view, label), 0)
    return remapped


def cell_alignments(outcomes: Iterable[Any]) -> list[dict[str, Any]]:
    """Each complete cross cell's alignment per target, from its ``result.json``: rows of label, train, test,
    fold, seed and the :meth:`Alignment.to_dict` fields."""
    rows = []
    for outcome in outcomes:
        if outcome.status != store.COMPLETE:
            continue
        record = store.finished_result(outcome.folder) or {}
        for test, alignment in (record.get(RESULT_KEY) or {}).items():
            rows.append({"label": outcome.cell.label, "train": outcome.cell.dataset, "test": str(test),
                         "fold": outcome.cell.fold, "seed": outcome.cell.seed, **alignment})
    return rows


def _alignment_summary(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (label, train, test): the scored classes (of every run), the chance level on them, and the images
    dropped: per fold the most any seed dropped, summed over folds (each test image counted once, as
    ``n_images`` counts them)."""
    grouped: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["label"], row["train"], row["test"]), []).append(row)
    summary = {}
    for key, runs in grouped.items():
        scored = sorted({name for run in runs for name in run["scored_classes"]}, key=CANONICAL_LABELS.index)
        per_fold: dict[int, dict[str, int]] = {}
        for run in runs:
            fold = per_fold.setdefault(int(run["fold"]), {})
            for name, n in run["dropped_by_class"].items():
                fold[name] = max(fold.get(name, 0), int(n))
        dropped: dict[str, int] = {}
        for fold_counts in per_fold.values():
            for name, n in fold_counts.items():
                dropped[name] = dropped.get(name, 0) + n
        summary[key] = {"scored_classes": scored, "chance": 1.0 / len(scored) if scored else float("nan"),
                        "dropped": int(sum(dropped.values())), "dropped_by_class": dropped}
    return summary


MATRIX_COLUMNS = ("label", "train", "test", "condition", "accuracy_mean", "accuracy_ci_low", "accuracy_ci_high",
                  "n_runs", "n_images", "chance", "scored_classes", "dropped", "dropped_by_class", "in_dataset",
                  "drop_from_in_dataset")


def cross_matrix(leaderboards: Sequence[Leaderboard], pairs: Mapping[str, tuple[str, str]],
                 alignments: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per architecture x trained on x tested on x condition (columns :data:`MATRIX_COLUMNS`): mean
    accuracy over runs with its hierarchical bootstrap interval, the scored classes and their chance level, the
    target images left out, and the in-dataset (diagonal) accuracy of the training dataset under the same
    condition with the drop from it (in accuracy, not points; NaN where the training dataset is not tested on)."""
    summary = _alignment_summary(list(alignments))
    rows = []
    for board in leaderboards:
        if board.view not in pairs:
            continue
        train, test = pairs[board.view]
        for _, row in board.aggregate.iterrows():
            label = str(row["label"])
            aligned = summary.get((label, train, test), {})
            rows.append({"label": label, "train": train, "test": test, "condition": str(row["condition"]),
                         "accuracy_mean": float(row["accuracy_mean"]), "accuracy_ci_low": float(row["accuracy_ci_low"]),
                         "accuracy_ci_high": float(row["accuracy_ci_high"]), "n_runs": int(row["n_runs"]),
                         "n_images": int(row["n_images"]), "chance": aligned.get("chance", float("nan")),
                         "scored_classes": list(aligned.get("scored_classes", [])),
                         "dropped": int(aligned.get("dropped", 0)),
                         "dropped_by_class": dict(aligned.get("dropped_by_class", {}))})
    frame = pd.DataFrame(rows, columns=list(MATRIX_COLUMNS[:-2]))
    diagonal = frame[frame["train"] == frame["test"]].set_index(["label", "train", "condition"])["accuracy_mean"]
    keys = list(zip(frame["label"], frame["train"], frame["condition"]))
    frame["in_dataset"] = [float(diagonal.get(key, float("nan"))) for key in keys]
    frame["drop_from_in_dataset"] = frame["in_dataset"] - frame["accuracy_mean"]
    return frame.reset_index(drop=True)


def cross_per_pose(leaderboards: Sequence[Leaderboard], pairs: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """Clean accuracy per pose of every trained-on x tested-on pair (label, train, test, pose, accuracy_mean,
    accuracy_ci_low, accuracy_ci_high): how far a model carries to another dataset at each head pose."""
    frames = [board.per_pose.assign(train=pairs[board.view][0], test=pairs[board.view][1])
              for board in leaderboards if board.view in pairs and not board.per_pose.empty]
    columns = ["label", "train", "test", "pose", "accuracy_mean", "accuracy_ci_low", "accuracy_ci_high"]
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)
    return frame[frame["pose"].astype(str) != ""][columns].reset_index(drop=True)


def cross_metrics(matrix: pd.DataFrame, label: str) -> dict[str, float]:
    """MLflow metrics of one architecture's matrix: ``cross/<train>/<test>/accuracy`` (clean) with its
    ``_ci_low``/``_ci_high``, ``chance`` and ``dropped``, and ``cross/<train>/<test>/<condition>/accuracy`` for
    every other condition."""
    metrics: dict[str, float] = {}
    for _, row in matrix[matrix["label"] == label].iterrows():
        base = f"cross/{name_part(row['train'])}/{name_part(row['test'])}"
        if row["condition"] == "clean":
            metrics.update({f"{base}/accuracy": row["accuracy_mean"], f"{base}/accuracy_ci_low": row["accuracy_ci_low"],
                            f"{base}/accuracy_ci_high": row["accuracy_ci_high"], f"{base}/chance": row["chance"],
                            f"{base}/dropped": float(row["dropped"])})
            if np.isfinite(row["drop_from_in_dataset"]) and row["train"] != row["test"]:
                metrics[f"{base}/drop_from_in_dataset"] = row["drop_from_in_dataset"]
        else:
            metrics[f"{base}/{row['condition']}/accuracy"] = row["accuracy_mean"]
    return metrics
