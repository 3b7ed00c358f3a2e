"""Classification metrics computed from per-sample predictions.

Per-sample predictions are the source of truth (see ``design.md``): every number here is computed from a
predictions frame, so re-scoring never needs retraining.

The predictions frame (one cell = architecture x variant x fold x seed) has one row per (condition, sample):

| column | type | meaning |
|---|---|---|
| ``condition`` | str | ``"clean"``, ``"pose=FL"``, ``"occlusion:kind=rectangle,severity=0.25"``, ... |
| ``sample_id`` | str | the sample, stable across conditions and runs |
| ``label`` | int | true class, index in ``CANONICAL_LABELS`` (0..K-1) |
| ``pred`` | int | predicted class (0..K-1) |

Optional: ``pose``, ``subject`` (str), ``logit_0 .. logit_{K-1}`` (float). The runner adds ``cell``,
``architecture``, ``variant``, ``fold`` and ``seed`` when it concatenates cells.

Conventions:

- **Absent classes.** Balanced accuracy and macro-F1 average over the classes *present in the true labels*
  (sklearn's ``recall_score`` / ``f1_score`` with ``labels=`` those classes). A prediction of an absent class
  still counts against the true class's recall, but the absent class gets no recall or F1 of its own and does not
  drag the averages down. Its per-class recall is NaN.
- **Robustness.** Following RobustBench, accuracy under a condition is reported beside its drop from clean,
  ``drop_from_clean = clean accuracy - condition accuracy``, computed *paired*: on the samples the condition
  shares with ``clean`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from fbench.data.table import CANONICAL_LABELS
from fbench.errors import FbenchError
from fbench.suite.conditions import is_subset

CLEAN = "clean"
PREDICTION_COLUMNS = ("condition", "sample_id", "label", "pred")
# Columns that identify a run; samples are paired across conditions within the same run.
RUN_COLUMNS = ("cell", "architecture", "variant", "fold", "seed")

__all__ = [
    "CLEAN",
    "PREDICTION_COLUMNS",
    "RUN_COLUMNS",
    "class_names",
    "classification_metrics",
    "condition_metrics",
    "confusion_matrix",
    "per_cell_metrics",
    "per_group_accuracy",
    "validate_predictions",
]


def class_names(num_classes: int, label_names: Sequence[str] | None = None) -> list[str]:
    """Names for classes ``0..num_classes-1``: ``label_names``, else the canonical labels, else ``"class_<i>"``."""
    if label_names is not None:
        names = [str(n) for n in label_names]
        if len(names) != num_classes:
            raise FbenchError(
                f"label_names has {len(names)} names but num_classes is {num_classes}; "
                "pass one name per class"
            )
        return names
    if num_classes <= len(CANONICAL_LABELS):
        return list(CANONICAL_LABELS[:num_classes])
    return [f"class_{i}" for i in range(num_classes)]


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise FbenchError(f"num_classes must be a positive int, got {num_classes!r}")
    return int(num_classes)


def _as_class_array(values: Any, what: str, num_classes: int) -> np.ndarray:
    """Coerce ``values`` to a 1-D int array and check every entry is a class index in ``0..num_classes-1``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise FbenchError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        try:
            as_float = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise FbenchError(f"{what} must be integer class indices; got dtype {arr.dtype}") from exc
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            bad = arr[~(np.isfinite(as_float) & (as_float == np.round(as_float)))][:5]
            raise FbenchError(f"{what} must be integer class indices; found {list(bad)}")
        arr = as_float
    arr = arr.astype(np.int64)
    out = (arr < 0) | (arr >= num_classes)
    if out.any():
        bad = sorted(set(arr[out].tolist()))[:5]
        raise FbenchError(
            f"{what} outside 0..{num_classes - 1}: {bad} ({int(out.sum())} entries); "
            "check num_classes or the adapter's label mapping"
        )
    return arr


def classification_metrics(
    labels: Any,
    preds: Any,
    num_classes: int,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class recall and the confusion matrix of one set of predictions.

    Args:
        labels: true class indices, 0..K-1.
        preds: predicted class indices, 0..K-1, same length.
        num_classes: K.
        label_names: names for the classes (default: the canonical label names).

    Returns:
        ``accuracy``; ``balanced_accuracy`` and ``macro_f1`` averaged over the classes present in ``labels``
        (sklearn with ``labels=`` those classes; absent classes are excluded from the averages);
        ``per_class_recall`` (class name -> recall, NaN for a class absent from ``labels``);
        ``confusion`` (K x K list of ints, rows = true class, columns = predicted); ``count``.

    Raises:
        FbenchError: on empty input, length mismatch or indices outside 0..K-1.
    """
    k = _check_num_classes(num_classes)
    y_true = _as_class_array(labels, "labels", k)
    y_pred = _as_class_array(preds, "preds", k)
    if y_true.shape != y_pred.shape:
        raise FbenchError(f"labels and preds differ in length: {y_true.size} vs {y_pred.size}")
    if y_true.size == 0:
        raise FbenchError("no predictions to score (empty labels and preds)")
    names = class_names(k, label_names)

    present = np.unique(y_true)
    confusion = skm.confusion_matrix(y_true, y_pred, labels=np.arange(k))
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)

    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # Mean recall over the classes present in y_true == sklearn's balanced_accuracy_score when every predicted
        # class is also a true class; stated explicitly so predictions of absent classes change nothing but recall.
        "balanced_accuracy": float(
            skm.recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_recall": {names[i]: float(recall[i]) for i in range(k)},
        "confusion": confusion.astype(int).tolist(),
        "count": int(y_true.size),
    }


def validate_predictions(
    predictions: pd.DataFrame,
    num_classes: int | None = None,
    required: Iterable[str] = PREDICTION_COLUMNS,
) -> None:
    """Check a predictions frame: a non-empty DataFrame with the required columns and labels/preds in 0..K-1.

    Raises:
        FbenchError: naming the missing columns, the out-of-range values or the emptiness.
    """
    if not isinstance(predictions, pd.DataFrame):
        raise FbenchError(f"predictions must be a pandas DataFrame, got {type(predictions).__name__}")
    missing = [c for c in required if c not in predictions.columns]
    if missing:
        raise FbenchError(
            f"predictions frame is missing column(s) {missing}; it has {list(predictions.columns)}. "
            f"A predictions frame needs {list(PREDICTION_COLUMNS)}"
        )
    if predictions.empty:
        raise FbenchError("predictions frame is empty (no rows); nothing to score")
    if num_classes is not None:
        k = _check_num_classes(num_classes)
        for col in ("label", "pred"):
            if col in predictions.columns:
                _as_class_array(predictions[col].to_numpy(), f"column '{col}'", k)


def _condition_order(conditions: pd.Series) -> list[str]:
    """Conditions in a stable order: ``clean`` first, then in order of first appearance."""
    seen = list(pd.unique(conditions))
    return ([CLEAN] if CLEAN in seen else []) + [c for c in seen if c != CLEAN]


def _pair_keys(predictions: pd.DataFrame) -> list[str]:
    return [c for c in RUN_COLUMNS if c in predictions.columns] + ["sample_id"]


def condition_metrics(
    predictions: pd.DataFrame,
    num_classes: int,
    label_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Metrics per condition, with the paired drop from clean accuracy (RobustBench style).

    One row per condition (``clean`` first, then the others in order of first appearance) with columns
    ``condition``, ``n``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``drop_from_clean``, ``n_paired`` and
    ``recall_<class name>`` for every class (NaN when the class is absent under that condition).

    ``drop_from_clean`` is clean accuracy minus condition accuracy, both computed on the samples the condition
    shares with ``clean`` (``n_paired`` of them; pairing is on ``sample_id`` within a run, i.e. also on whichever of
    ``cell``, ``architecture``, ``variant``, ``fold``, ``seed`` are present). It is NaN when there is no clean
    condition or no shared sample; for ``clean`` itself it is 0.

    Raises:
        FbenchError: missing columns, empty frame, indices outside 0..K-1, or a sample listed twice under one
        condition of one run.
    """
    k = _check_num_classes(num_classes)
    validate_predictions(predictions, k)
    names = class_names(k, label_names)
    keys = _pair_keys(predictions)
    dup = predictions.duplicated(subset=["condition", *keys])
    if dup.any():
        example = predictions.loc[dup, ["condition", *keys]].iloc[0].to_dict()
        raise FbenchError(
            f"{int(dup.sum())} duplicate (condition, {', '.join(keys)}) rows in the predictions, e.g. {example}; "
            "score one run at a time (per_cell_metrics) or add the run columns"
        )

    correct = predictions["label"].to_numpy() == predictions["pred"].to_numpy()
    frame = predictions.assign(_correct=correct)
    clean = frame[frame["condition"] == CLEAN]
    clean_correct = clean.set_index(keys)["_correct"] if not clean.empty else None

    rows = []
    for condition in _condition_order(frame["condition"]):
        sub = frame[frame["condition"] == condition]
        m = classification_metrics(sub["label"].to_numpy(), sub["pred"].to_numpy(), k, names)
        drop, n_paired = np.nan, 0
        if clean_correct is not None and is_subset(condition):
            # a subset of the clean test set: its drop is against the whole set (not paired)
            drop = float(clean_correct.mean() - sub["_correct"].mean())
        elif clean_correct is not None:
            cond_correct = sub.set_index(keys)["_correct"]
            shared = cond_correct.index.intersection(clean_correct.index)
            n_paired = len(shared)
            if n_paired:
                drop = float(clean_correct.loc[shared].mean() - cond_correct.loc[shared].mean())
        row = {
            "condition": condition,
            "n": m["count"],
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"],
            "drop_from_clean": drop,
            "n_paired": n_paired,
        }
        row.update({f"recall_{name}": value for name, value in m["per_class_recall"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def per_cell_metrics(
    predictions: pd.DataFrame,
    num_classes: int,
    label_names: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`condition_metrics` for every run of a concatenated predictions frame.

    ``by`` defaults to whichever of ``cell``, ``architecture``, ``variant``, ``fold``, ``seed`` are present; the
    result has those columns followed by the :func:`condition_metrics` columns, ready for
    :func:`fbench.score.stats.aggregate_runs`.
    """
    validate_predictions(predictions, num_classes)
    by = [c for c in RUN_COLUMNS if c in predictions.columns] if by is None else list(by)
    missing = [c for c in by if c not in predictions.columns]
    if missing:
        raise FbenchError(f"predictions frame is missing grouping column(s) {missing}")
    if not by:
        return condition_metrics(predictions, num_classes, label_names)
    parts = []
    for key, sub in predictions.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        part = condition_metrics(sub, num_classes, label_names)
        for col, value in reversed(list(zip(by, key))):
            part.insert(0, col, value)  # type: ignore[arg-type]  # a groupby key: one value of the column
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def per_group_accuracy(predictions: pd.DataFrame, by: str = "pose") -> pd.DataFrame:
    """Accuracy per (condition, group value), e.g. per pose or per subject.

    Returns columns ``condition``, ``<by>``, ``n``, ``accuracy``; conditions in the stable order of
    :func:`condition_metrics`, group values in order of first appearance within each condition.

    Raises:
        FbenchError: missing columns (including ``by``) or an empty frame.
    """
    validate_predictions(predictions, None, required=(*PREDICTION_COLUMNS, by))
    frame = predictions.assign(_correct=(predictions["label"].to_numpy() == predictions["pred"].to_numpy()))
    rows = []
    for condition in _condition_order(frame["condition"]):
        sub = frame[frame["condition"] == condition]
        grouped = sub.groupby(by, sort=False, dropna=False)["_correct"].agg(["size", "mean"])
        for value, (size, mean) in grouped.iterrows():
            rows.append({"condition": condition, by: value, "n": int(size), "accuracy": float(mean)})
    return pd.DataFrame(rows, columns=["condition", by, "n", "accuracy"])


def confusion_matrix(
    predictions: pd.DataFrame,
    condition: str = CLEAN,
    num_classes: int | None = None,
) -> np.ndarray:
    """The K x K confusion matrix (rows = true class, columns = predicted) of one condition.

    ``num_classes`` defaults to the number of ``logit_<i>`` columns; pass it when the frame has none.

    Raises:
        FbenchError: missing columns, empty frame, unknown condition, indices outside 0..K-1, or no way to tell K.
    """
    validate_predictions(predictions)
    if num_classes is None:
        logits = [c for c in predictions.columns if str(c).startswith("logit_")]
        if not logits:
            raise FbenchError("confusion_matrix needs num_classes (the predictions frame has no logit_<i> columns)")
        num_classes = len(logits)
    k = _check_num_classes(num_classes)
    sub = predictions[predictions["condition"] == condition]
    if sub.empty:
        available = _condition_order(predictions["condition"])
        raise FbenchError(f"no predictions for condition {condition!r}; conditions present: {available}")
    y_true = _as_class_array(sub["label"].to_numpy(), "column 'label'", k)
    y_pred = _as_class_array(sub["pred"].to_numpy(), "column 'pred'", k)
    return skm.confusion_matrix(y_true, y_pred, labels=np.arange(k))
