"""Aggregation over folds and seeds, bootstrap confidence intervals and paired tests between architectures.

Everything is computed from per-sample predictions or from per-run metrics derived from them (see
:mod:`fbench.score.metrics`), and is deterministic given ``seed``.

- :func:`mean_std_ci`: mean, sample standard deviation and a percentile-bootstrap CI of the mean over runs
  (folds x seeds), via :func:`scipy.stats.bootstrap`.
- :func:`aggregate_runs`: that, for every (architecture, variant, condition) and metric.
- :func:`mcnemar_exact`, :func:`paired_bootstrap`: paired comparisons of two classifiers on the same samples.
- :func:`pair_predictions`, :func:`compare_architectures`: align predictions and compare every architecture
  against a reference, with Holm-adjusted p-values (:func:`holm_adjust`).

Caveat: when predictions of several folds and seeds are pooled, the pairs are (fold, seed, sample); a sample
scored under several seeds appears several times, so the tests treat seed-to-seed variation as independent.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from fbench.errors import FbenchError

__all__ = [
    "aggregate_runs",
    "compare_architectures",
    "holm_adjust",
    "mcnemar_exact",
    "mean_std_ci",
    "pair_predictions",
    "paired_bootstrap",
]

DEFAULT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
DEFAULT_GROUP_BY = ("architecture", "variant", "condition")


def _check_confidence(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise FbenchError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_resamples(n_resamples: int) -> int:
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise FbenchError(f"n_resamples must be a positive int, got {n_resamples!r}")
    return int(n_resamples)


def mean_std_ci(
    values: Any,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean, standard deviation and percentile-bootstrap CI of the mean of per-run values (folds x seeds).

    The CI is :func:`scipy.stats.bootstrap` with ``method="percentile"``, vectorised, seeded with
    ``np.random.default_rng(seed)``. NaN values are dropped (and counted in ``note``).

    Returns:
        ``mean``, ``std`` (ddof=1; NaN when n < 2), ``ci_low``, ``ci_high``, ``n`` (finite values used) and
        ``note`` ("" unless something was special): with n = 1 the CI is (value, value) -- no spread can be
        estimated from one run; when all values are equal the CI is degenerate at that value (scipy would
        return NaN with a warning).

    Raises:
        FbenchError: no finite values, or bad ``confidence`` / ``n_resamples``.
    """
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise FbenchError(f"mean_std_ci needs numbers, got {values!r}") from exc
    finite = arr[np.isfinite(arr)]
    notes = []
    if finite.size < arr.size:
        notes.append(f"{arr.size - finite.size} non-finite value(s) dropped")
    n = int(finite.size)
    if n == 0:
        raise FbenchError("mean_std_ci needs at least one finite value; got none")
    mean = float(finite.mean())
    std = float(finite.std(ddof=1)) if n >= 2 else float("nan")
    if n == 1:
        notes.append("single run: no spread, CI is the value itself")
        low = high = mean
    elif np.ptp(finite) == 0:
        notes.append("all runs equal: degenerate CI at the value")
        low = high = mean
    else:
        with warnings.catch_warnings():
            # A resampling distribution with few distinct values can warn; the percentile CI is still defined.
            warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
            res = sps.bootstrap(
                (finite,),
                np.mean,
                n_resamples=n_resamples,
                vectorized=True,
                confidence_level=confidence,
                method="percentile",
                rng=np.random.default_rng(seed),
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (np.isfinite(low) and np.isfinite(high)):  # defensive: fall back to the degenerate interval
            notes.append("bootstrap CI undefined; reported as the mean")
            low = high = mean
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high, "n": n, "note": "; ".join(notes)}


def aggregate_runs(
    cell_metrics: pd.DataFrame,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Aggregate per-run metrics (one row per run and condition, e.g. :func:`fbench.score.metrics.per_cell_metrics`).

    Returns one row per group (in order of first appearance) with the ``group_by`` columns, then for every metric
    ``<metric>_mean``, ``<metric>_std``, ``<metric>_ci_low``, ``<metric>_ci_high`` (see :func:`mean_std_ci`),
    and ``n_runs`` (rows in the group).

    Raises:
        FbenchError: missing group or metric columns, or an empty frame.
    """
    if not isinstance(cell_metrics, pd.DataFrame):
        raise FbenchError(f"cell_metrics must be a pandas DataFrame, got {type(cell_metrics).__name__}")
    group_by, metrics = list(group_by), list(metrics)
    missing = [c for c in (*group_by, *metrics) if c not in cell_metrics.columns]
    if missing:
        raise FbenchError(
            f"cell_metrics is missing column(s) {missing}; it has {list(cell_metrics.columns)}"
        )
    if cell_metrics.empty:
        raise FbenchError("cell_metrics is empty (no rows); nothing to aggregate")
    rows = []
    groups = cell_metrics.groupby(group_by, sort=False, dropna=False) if group_by else [((), cell_metrics)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(group_by, key))
        for metric in metrics:
            values = sub[metric].to_numpy(dtype=float)
            if np.isfinite(values).any():
                s = mean_std_ci(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
            else:  # e.g. drop_from_clean without a clean condition
                s = dict.fromkeys(("mean", "std", "ci_low", "ci_high"), float("nan"))
            for stat in ("mean", "std", "ci_low", "ci_high"):
                row[f"{metric}_{stat}"] = s[stat]
        row["n_runs"] = len(sub)
        rows.append(row)
    return pd.DataFrame(rows)


def _as_bool_pair(correct_a: Any, correct_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.ndim != 1 or b.ndim != 1:
        raise FbenchError(f"correctness arrays must be one-dimensional, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise FbenchError(f"correctness arrays differ in length: {a.size} vs {b.size}; pair the samples first")
    for name, arr in (("correct_a", a), ("correct_b", b)):
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise FbenchError(f"{name} must be booleans (or 0/1), got values like {np.unique(arr)[:5].tolist()}")
    return a.astype(bool), b.astype(bool)


def mcnemar_exact(correct_a: Any, correct_b: Any) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired correctness.

    ``b`` = samples A gets right and B wrong, ``c`` = A wrong and B right; under the null hypothesis each
    discordant pair goes either way with probability 1/2, so ``p_value`` is
    ``scipy.stats.binomtest(b, b + c, 0.5)`` (two-sided); 1.0 when there are no discordant pairs.
    """
    a, b_ = _as_bool_pair(correct_a, correct_b)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "p_value": min(p, 1.0)}


def paired_bootstrap(
    correct_a: Any,
    correct_b: Any,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Paired bootstrap of the accuracy difference ``acc_a - acc_b`` over samples.

    Samples are resampled with replacement (the pair stays together). The difference of a resample depends only
    on how many of the drawn samples are of each kind (A right/B wrong: +1, A wrong/B right: -1, concordant: 0),
    so the n draws of each resample are taken as one multinomial count over those three kinds -- the same
    distribution as drawing n sample indices, in O(n_resamples) memory, vectorised and seeded with
    ``np.random.default_rng(seed)``.

    Returns:
        ``diff`` (observed acc_a - acc_b), ``ci_low``/``ci_high`` (percentile interval at ``confidence``) and
        ``p_value``, two-sided from the bootstrap distribution: ``min(1, 2 * min(P*(diff <= 0), P*(diff >= 0)))``
        -- 1.0 for identical classifiers, small when the resampled differences keep one sign.
    """
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    a, b = _as_bool_pair(correct_a, correct_b)
    n = a.size
    if n == 0:
        raise FbenchError("paired_bootstrap needs at least one paired sample; got none")
    d = a.astype(np.int64) - b.astype(np.int64)
    diff = float(d.mean())
    p_kinds = np.array([np.sum(d == 1), np.sum(d == -1), np.sum(d == 0)], dtype=float) / n
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, p_kinds, size=n_resamples)
    boot = (counts[:, 0] - counts[:, 1]) / n
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2.0 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    return {"diff": diff, "ci_low": float(low), "ci_high": float(high), "p_value": float(p)}


def _check_prediction_frame(frame: Any, name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise FbenchError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("condition", "sample_id", "label", "pred") if c not in frame.columns]
    if missing:
        raise FbenchError(f"{name} is missing column(s) {missing}; it has {list(frame.columns)}")


def pair_predictions(
    pred_a: pd.DataFrame,
    pred_b: pd.DataFrame,
    condition: str = "clean",
) -> tuple[np.ndarray, np.ndarray]:
    """Paired correctness of two systems under one condition.

    Rows are aligned on (``fold``, ``seed``, ``sample_id``) -- ``fold`` and ``seed`` only when both frames have
    them -- and returned sorted by that key.

    Raises:
        FbenchError: missing columns, no rows for ``condition``, a key listed twice, or the two frames not
        covering the same samples (the message gives the counts on each side).
    """
    _check_prediction_frame(pred_a, "pred_a")
    _check_prediction_frame(pred_b, "pred_b")
    keys = [c for c in ("fold", "seed") if c in pred_a.columns and c in pred_b.columns] + ["sample_id"]
    sides = []
    for name, frame in (("pred_a", pred_a), ("pred_b", pred_b)):
        sub = frame[frame["condition"] == condition]
        if sub.empty:
            available = list(pd.unique(frame["condition"]))
            raise FbenchError(f"{name} has no predictions for condition {condition!r}; it has {available}")
        dup = sub.duplicated(subset=keys)
        if dup.any():
            raise FbenchError(
                f"{name} lists {int(dup.sum())} ({', '.join(keys)}) key(s) more than once under {condition!r}; "
                "select one architecture/variant before pairing"
            )
        correct = sub["label"].to_numpy() == sub["pred"].to_numpy()
        sides.append(sub[keys].assign(_correct=correct))
    merged = sides[0].merge(sides[1], on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a = int((merged["_merge"] == "left_only").sum())
    only_b = int((merged["_merge"] == "right_only").sum())
    if only_a or only_b:
        both = int((merged["_merge"] == "both").sum())
        raise FbenchError(
            f"pred_a and pred_b do not cover the same samples under {condition!r} (keyed on {keys}): "
            f"{both} shared, {only_a} only in pred_a, {only_b} only in pred_b"
        )
    merged = merged.sort_values(keys, kind="stable")
    return merged["_correct_a"].to_numpy(dtype=bool), merged["_correct_b"].to_numpy(dtype=bool)


def holm_adjust(p_values: Any) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order (NaNs stay NaN and are not counted).

    With the m p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) * p(j))``.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def _system_names(predictions: pd.DataFrame) -> pd.Series:
    arch = predictions["architecture"].astype(str)
    if "variant" in predictions.columns:
        return arch + "/" + predictions["variant"].astype(str)
    return arch


def compare_architectures(
    predictions: pd.DataFrame,
    reference: str,
    condition: str = "clean",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Compare every architecture (or architecture/variant) against ``reference`` on paired samples.

    Systems are named ``architecture`` or, when a ``variant`` column exists, ``architecture/variant``;
    ``reference`` may be given as a bare architecture name when it has one variant. Each comparison pairs
    samples on (fold, seed, sample_id) (:func:`pair_predictions`).

    Returns one row per other system, in order of first appearance, with ``system``, ``reference``, ``n``
    (paired samples), ``accuracy``, ``reference_accuracy``, ``diff`` (accuracy - reference accuracy),
    ``ci_low``/``ci_high`` (paired bootstrap), ``bootstrap_p``, ``mcnemar_b`` (system right, reference wrong),
    ``mcnemar_c``, ``mcnemar_p``, ``p_holm`` (McNemar p, Holm-adjusted across the comparisons) and
    ``significant`` (``p_holm < alpha``).

    Raises:
        FbenchError: no ``architecture`` column, unknown or ambiguous reference, or misaligned samples.
    """
    _check_prediction_frame(predictions, "predictions")
    if "architecture" not in predictions.columns:
        raise FbenchError("predictions need an 'architecture' column to compare architectures")
    systems = _system_names(predictions)
    names = list(pd.unique(systems))
    if reference not in names:
        matches = [s for s in names if s.split("/", 1)[0] == reference]
        if len(matches) == 1:
            reference = matches[0]
        elif matches:
            raise FbenchError(f"reference {reference!r} has several variants {matches}; name one of them")
        else:
            raise FbenchError(f"reference {reference!r} not in the predictions; systems present: {names}")
    ref_frame = predictions[systems == reference]
    rows = []
    for name in names:
        if name == reference:
            continue
        correct, correct_ref = pair_predictions(predictions[systems == name], ref_frame, condition)
        boot = paired_bootstrap(correct, correct_ref, n_resamples=n_resamples, seed=seed, confidence=confidence)
        mc = mcnemar_exact(correct, correct_ref)
        rows.append(
            {
                "system": name,
                "reference": reference,
                "condition": condition,
                "n": int(correct.size),
                "accuracy": float(correct.mean()),
                "reference_accuracy": float(correct_ref.mean()),
                "diff": boot["diff"],
                "ci_low": boot["ci_low"],
                "ci_high": boot["ci_high"],
                "bootstrap_p": boot["p_value"],
                "mcnemar_b": mc["b"],
                "mcnemar_c": mc["c"],
                "mcnemar_p": mc["p_value"],
            }
        )
    columns = [
        "system", "reference", "condition", "n", "accuracy", "reference_accuracy", "diff", "ci_low", "ci_high",
        "bootstrap_p", "mcnemar_b", "mcnemar_c", "mcnemar_p", "p_holm", "significant",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(rows)
    out["p_holm"] = holm_adjust(out["mcnemar_p"].to_numpy())
    out["significant"] = out["p_holm"] < alpha
    return out[columns]
