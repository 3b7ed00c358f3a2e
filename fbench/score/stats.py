"""Intervals over runs and test images, and paired tests between architectures that count each test image once.

Everything is computed from per-sample predictions (see :mod:`fbench.score.metrics`) and is deterministic given
``seed``. A *run* is one (fold, seed) of an architecture; a *test image* is a (fold, sample_id): the folds of a
k-fold test every image once, and every seed of a fold tests the same images again.

- :func:`hierarchical_bootstrap`: the two-level bootstrap behind every interval the leaderboard shows. It
  resamples runs, then the test images of each fold; with one run it is the per-image bootstrap.
- :func:`aggregate_predictions`: for every (architecture, condition) and metric, the mean and standard deviation
  over runs and the hierarchical bootstrap interval of that mean (what the leaderboard prints).
- :func:`mean_std_ci`, :func:`aggregate_runs`: the same summary from per-run numbers alone, when no predictions
  are at hand; their interval is over runs only (a single run gives ``[x, x]``).
- :func:`pair_predictions`: two systems' correctness per unique test image -- (view, fold, sample_id) -- averaged
  over seeds; :func:`mcnemar_exact` (on per-image majority correctness) and :func:`paired_bootstrap` (resampling
  images with their seeds together) compare them; :func:`compare_architectures` compares every architecture
  against a reference, with Holm-adjusted p-values (:func:`holm_adjust`). ``n`` is the number of unique images, so
  three seeds of identical predictions give the p-values of one seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from fbench.errors import FbenchError
from fbench.score.metrics import CLEAN, validate_predictions
from fbench.suite.conditions import is_subset

__all__ = [
    "INTERVAL_METRICS",
    "aggregate_predictions",
    "aggregate_runs",
    "compare_architectures",
    "hierarchical_bootstrap",
    "holm_adjust",
    "mcnemar_exact",
    "mean_std_ci",
    "pair_predictions",
    "paired_bootstrap",
]

DEFAULT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
DEFAULT_GROUP_BY = ("architecture", "variant", "condition")
# The metrics :func:`aggregate_predictions` gives an interval for.
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "drop_from_clean")
# Counts of the draws held at once (resamples x unique image patterns) before the resamples are taken in chunks.
_CHUNK_CELLS = 4_000_000
# Resampled statistics are rounded to this many decimals before their sign is compared with zero (a mean of seed
# fractions such as 1/3 - 1/3 is not always exactly 0 in floating point).
_DECIMALS = 12
# A per-run statistic: kind counts (..., num_kinds) -> values (...); see hierarchical_bootstrap.
Statistic = Callable[[np.ndarray], np.ndarray]


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

    For per-run numbers alone: the CI is over runs only and ignores how many test images each run scored (one run
    gives ``[x, x]``). With the predictions at hand use :func:`aggregate_predictions` (runs and test images).

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

    The intervals are over runs only (:func:`mean_std_ci`); :func:`aggregate_predictions` gives the leaderboard's
    intervals over runs and test images.

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


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise FbenchError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _summary(observed: np.ndarray, boot: np.ndarray, confidence: float, n_images: int) -> dict[str, Any]:
    """Mean and std of the per-run values, percentile interval of the bootstrap means."""
    notes = []
    finite = observed[np.isfinite(observed)]
    if finite.size < observed.size:
        notes.append(f"{observed.size - finite.size} run(s) without a value left out")
    usable = boot[np.isfinite(boot)]
    if usable.size < boot.size:
        notes.append(f"{boot.size - usable.size} resample(s) without a value left out")
    if finite.size == 0 or usable.size == 0:
        mean = std = low = high = float("nan")
    else:
        mean = float(finite.mean())
        std = float(finite.std(ddof=1)) if finite.size >= 2 else float("nan")
        alpha = 1.0 - confidence
        low, high = (float(v) for v in np.quantile(usable, [alpha / 2, 1 - alpha / 2]))
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high, "n_runs": int(observed.size),
            "n_images": n_images, "note": "; ".join(notes)}


class _KindSum:
    """Pattern counts ``(rows, patterns)`` -> one run's kind counts ``(rows, num_kinds)``, given the kind each
    pattern has in that run (-1: the run did not score the image). A sum of columns, not a matrix product."""

    def __init__(self, kind_of_pattern: np.ndarray, num_kinds: int) -> None:
        self.order = np.argsort(kind_of_pattern, kind="stable")
        ordered = kind_of_pattern[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.kinds = ordered[self.starts]
        self.num_kinds = num_kinds

    def __call__(self, pattern_counts: np.ndarray) -> np.ndarray:
        sums = np.add.reduceat(pattern_counts[:, self.order], self.starts, axis=1)
        out = np.zeros((pattern_counts.shape[0], self.num_kinds))
        scored = self.kinds >= 0
        out[:, self.kinds[scored]] = sums[:, scored]
        return out


def hierarchical_bootstrap(
    kinds: pd.DataFrame,
    num_kinds: int,
    statistics: Mapping[str, Statistic],
    n_resamples: int = 2_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Two-level bootstrap of the mean over runs of per-run statistics: runs, then the test images of each fold.

    ``kinds`` has one row per (run, test image): ``fold``, ``seed``, ``sample_id`` and ``kind``, an int in
    ``0..num_kinds-1`` saying what the run made of the image (e.g. ``label * K + pred``, a cell of the confusion
    matrix). A missing ``fold`` or ``seed`` column means a single fold or seed. A run is a (fold, seed); every
    ``statistic`` maps kind counts ``(..., num_kinds)`` to a value ``(...)`` (NaN where undefined), so it sees a
    run's images only through how many fall in each kind.

    One bootstrap replicate draws, with replacement:

    1. the runs: as many folds as there are, then within each drawn fold as many seeds as it has (a run is a
       (fold, seed); drawing folds first keeps seeds from standing in for folds);
    2. the test images of every fold -- one draw per fold, shared by all of the fold's seeds, so that an image
       tested under three seeds is still one image (three seeds of identical predictions give the interval of one
       seed);

    and averages the statistic over the drawn runs, each computed on its fold's drawn images. With one run this is
    the per-image bootstrap; with several, the interval also carries the spread between runs. As with every
    two-stage bootstrap that resamples both stages, the image-to-image noise is counted again in the spread
    between folds, so with many folds the interval errs on the wide side.

    Images are drawn as multinomial counts over their distinct patterns (the kinds an image has under each seed of
    the fold) -- the same distribution as drawing image indices, at a cost that grows with the number of distinct
    patterns rather than of images. Folds, seeds and images use separate random streams spawned from ``seed``.

    Returns:
        statistic name -> ``mean`` and ``std`` (ddof=1, NaN with one run) of the per-run values, ``ci_low`` and
        ``ci_high`` (percentile interval of the bootstrap means at ``confidence``), ``n_runs``, ``n_images``
        (unique test images) and ``note`` ("" unless runs or resamples without a value were left out).

    Raises:
        FbenchError: missing columns, kinds outside ``0..num_kinds-1``, an image listed twice in one run, no rows,
        or bad ``n_resamples`` / ``seed`` / ``confidence``.
    """
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    seed = _check_seed(seed)
    if not isinstance(kinds, pd.DataFrame):
        raise FbenchError(f"kinds must be a pandas DataFrame, got {type(kinds).__name__}")
    missing = [c for c in ("sample_id", "kind") if c not in kinds.columns]
    if missing:
        raise FbenchError(f"kinds is missing column(s) {missing}; it has {list(kinds.columns)}")
    if kinds.empty:
        raise FbenchError("hierarchical_bootstrap needs at least one (run, image) row; got none")
    if not statistics:
        raise FbenchError("hierarchical_bootstrap needs at least one statistic; got none")
    frame = kinds.assign(**{c: kinds[c] if c in kinds.columns else 0 for c in ("fold", "seed")})
    codes = frame["kind"].to_numpy()
    if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() >= num_kinds:
        raise FbenchError(f"kind must be ints in 0..{num_kinds - 1}; got values like {np.unique(codes)[:5].tolist()}")
    dup = frame.duplicated(subset=["fold", "seed", "sample_id"])
    if dup.any():
        example = frame.loc[dup, ["fold", "seed", "sample_id"]].iloc[0].to_dict()
        raise FbenchError(f"{int(dup.sum())} image(s) listed twice in one run, e.g. {example}")

    image_stream, fold_stream, seed_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    observed: dict[str, list[float]] = {name: [] for name in statistics}
    resampled: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    seeds_per_fold = []
    n_images = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        for _fold, part in frame.groupby("fold", sort=True, dropna=False):
            # images x seeds of this fold; -1 where a seed lacks the image
            table = part.pivot(index="sample_id", columns="seed", values="kind").sort_index(axis=1)
            patterns, counts = np.unique(table.fillna(-1).to_numpy(dtype=np.int64), axis=0, return_counts=True)
            n = int(counts.sum())
            n_images += n
            seeds_per_fold.append(patterns.shape[1])
            runs = [_KindSum(patterns[:, s], num_kinds) for s in range(patterns.shape[1])]
            for run in runs:
                run_counts = run(counts[None, :].astype(float))[0]
                for name, statistic in statistics.items():
                    observed[name].append(float(statistic(run_counts)))
            chunk = max(1, _CHUNK_CELLS // max(patterns.shape[0], num_kinds))
            fold_values: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
            for start in range(0, n_resamples, chunk):
                draws = image_stream.multinomial(n, counts / n, size=min(chunk, n_resamples - start)).astype(float)
                run_counts_drawn = [run(draws) for run in runs]
                for name, statistic in statistics.items():
                    fold_values[name].append(np.stack([statistic(c) for c in run_counts_drawn], axis=1))
            for name in statistics:
                resampled[name].append(np.concatenate(fold_values[name], axis=0))
        picks, drawn = _draw_runs(np.asarray(seeds_per_fold), n_resamples, fold_stream, seed_stream)
        out = {}
        for name in statistics:
            values = np.concatenate(resampled[name], axis=1)  # resamples x runs, fold by fold
            chosen = np.take_along_axis(values, picks, axis=1)
            usable = drawn & np.isfinite(chosen)
            boot = np.where(usable, chosen, 0.0).sum(axis=1) / usable.sum(axis=1)  # NaN: no drawn run has a value
            out[name] = _summary(np.asarray(observed[name]), boot, confidence, n_images)
    return out


def _draw_runs(seeds_per_fold: np.ndarray, n_resamples: int, fold_stream: np.random.Generator,
               seed_stream: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The runs of every replicate: F folds drawn with replacement, then S_f seeds of each drawn fold f.

    Returns run indices (fold-major, as the runs are laid out) and which of them are drawn, both
    ``(n_resamples, F * max S)``: a drawn fold with fewer seeds than the most fills the rest with undrawn slots.
    """
    folds, most = seeds_per_fold.size, int(seeds_per_fold.max())
    offsets = np.r_[0, np.cumsum(seeds_per_fold)[:-1]]
    fold = fold_stream.integers(0, folds, size=(n_resamples, folds))
    seeds = seeds_per_fold[fold][..., None]  # resamples x folds x 1
    seed = np.minimum((seed_stream.random((n_resamples, folds, most)) * seeds).astype(np.int64), seeds - 1)
    drawn = np.arange(most) < seeds
    picks = np.where(drawn, offsets[fold][..., None] + seed, 0)
    return picks.reshape(n_resamples, -1), drawn.reshape(n_resamples, -1)


def _per_class(counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confusion counts ``(..., k*k)`` (``label * k + pred``) -> true positives, support, predicted, per class."""
    confusion = counts.reshape(*counts.shape[:-1], k, k)
    return np.diagonal(confusion, axis1=-2, axis2=-1), confusion.sum(axis=-1), confusion.sum(axis=-2)


def _confusion_statistics(k: int) -> dict[str, Statistic]:
    """Balanced accuracy and macro-F1 from confusion counts, averaged over the classes present in the true labels
    (the convention of :func:`fbench.score.metrics.classification_metrics`)."""

    def balanced_accuracy(counts: np.ndarray) -> np.ndarray:
        tp, support, _ = _per_class(counts, k)
        present = support > 0
        recall = np.where(present, tp / np.maximum(support, 1), 0.0)
        return recall.sum(axis=-1) / present.sum(axis=-1)

    def macro_f1(counts: np.ndarray) -> np.ndarray:
        tp, support, predicted = _per_class(counts, k)
        present = support > 0
        f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), 0.0)
        return f1.sum(axis=-1) / present.sum(axis=-1)

    return {"balanced_accuracy": balanced_accuracy, "macro_f1": macro_f1}


def _accuracy(counts: np.ndarray) -> np.ndarray:
    """Accuracy from (wrong, right) counts."""
    return counts[..., 1] / counts.sum(axis=-1)


def _drop_statistic(subset: bool) -> Statistic:
    """Clean minus condition accuracy from counts of ``clean_state * 3 + condition_state`` (0 wrong, 1 right,
    2 not scored): on the images scored under both (paired), or, for a subset of the test set, on each one's own
    images (the convention of :func:`fbench.score.metrics.condition_metrics`)."""

    def drop(counts: np.ndarray) -> np.ndarray:
        c = counts.reshape(*counts.shape[:-1], 3, 3)
        if subset:
            clean = c[..., 1, :].sum(axis=-1) / c[..., :2, :].sum(axis=(-2, -1))
            condition = c[..., :, 1].sum(axis=-1) / c[..., :, :2].sum(axis=(-2, -1))
            return clean - condition
        return (c[..., 1, 0] - c[..., 0, 1]) / c[..., :2, :2].sum(axis=(-2, -1))

    return drop


def _run_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``fold`` and ``seed`` (0 where absent: one fold, one seed)."""
    return frame.assign(**{c: frame[c] if c in frame.columns else 0 for c in ("fold", "seed")})


def aggregate_predictions(
    predictions: pd.DataFrame,
    num_classes: int,
    group_by: Sequence[str] = ("architecture",),
    metrics: Sequence[str] = INTERVAL_METRICS,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group and condition: every metric's mean and std over runs and its hierarchical bootstrap interval.

    ``predictions`` is a concatenated predictions frame (:mod:`fbench.score.metrics`) with the ``group_by``
    columns and ``fold`` and ``seed`` (absent: one fold, one seed). A run's value of a metric is the one
    :func:`fbench.score.metrics.condition_metrics` gives for that (group, fold, seed); ``<metric>_mean`` and
    ``<metric>_std`` are over runs, and the interval is :func:`hierarchical_bootstrap` over the runs and their test
    images: accuracy from each image's correctness, balanced accuracy and macro-F1 from its confusion cell,
    ``drop_from_clean`` from its correctness clean and under the condition (paired on the images scored under both,
    or, for a ``subset:`` condition, the whole clean set against the subset). Under ``clean`` the drop is 0 by
    definition and its interval ``[0, 0]``.

    Returns one row per (group, condition), groups in order of first appearance, ``clean`` first within a group,
    with the ``group_by`` columns, ``condition``, ``<metric>_mean``, ``<metric>_std`` (NaN with one run),
    ``<metric>_ci_low``, ``<metric>_ci_high`` for every metric, ``n_runs`` and ``n_images`` (unique test images:
    (fold, sample_id)).

    Raises:
        FbenchError: a bad predictions frame, missing ``group_by`` columns, an unknown metric, or an image listed
        twice in one run.
    """
    validate_predictions(predictions, num_classes)
    group_by, metrics = list(group_by), list(metrics)
    unknown = [m for m in metrics if m not in INTERVAL_METRICS]
    if unknown:
        raise FbenchError(f"no interval for metric(s) {unknown}; known: {list(INTERVAL_METRICS)}")
    missing = [c for c in group_by if c not in predictions.columns]
    if missing:
        raise FbenchError(
            f"predictions frame is missing grouping column(s) {missing}; it has {list(predictions.columns)}"
        )
    k = int(num_classes)
    frame = _run_columns(predictions)
    label, pred = frame["label"].to_numpy(dtype=np.int64), frame["pred"].to_numpy(dtype=np.int64)
    frame = frame.assign(_confusion=label * k + pred, _correct=(label == pred).astype(np.int64))
    confusion_stats = {name: f for name, f in _confusion_statistics(k).items() if name in metrics}

    def bootstrap(kinds: pd.DataFrame, num_kinds: int, statistics: Mapping[str, Statistic]) -> dict[str, Any]:
        return hierarchical_bootstrap(kinds, num_kinds, statistics, n_resamples, seed, confidence)

    keys = ["fold", "seed", "sample_id"]
    rows = []
    groups = frame.groupby(group_by, sort=False, dropna=False) if group_by else [((), frame)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        clean = group[group["condition"] == CLEAN]
        conditions = list(pd.unique(group["condition"]))
        for condition in sorted(conditions, key=lambda c: c != CLEAN):
            sub = group[group["condition"] == condition]
            n_runs = int(sub[["fold", "seed"]].drop_duplicates().shape[0])
            found: dict[str, dict[str, Any]] = {}
            if "accuracy" in metrics:
                found.update(bootstrap(sub[keys].assign(kind=sub["_correct"]), 2, {"accuracy": _accuracy}))
            if confusion_stats:
                found.update(bootstrap(sub[keys].assign(kind=sub["_confusion"]), k * k, confusion_stats))
            if "drop_from_clean" in metrics and condition == CLEAN:
                found["drop_from_clean"] = {"mean": 0.0, "std": 0.0 if n_runs >= 2 else float("nan"),
                                            "ci_low": 0.0, "ci_high": 0.0}
            elif "drop_from_clean" in metrics and not clean.empty:
                both = clean[[*keys, "_correct"]].merge(sub[[*keys, "_correct"]], on=keys, how="outer",
                                                        suffixes=("_clean", "_condition"))
                state = both[["_correct_clean", "_correct_condition"]].fillna(2).to_numpy(dtype=np.int64)
                found.update(bootstrap(both[keys].assign(kind=state[:, 0] * 3 + state[:, 1]), 9,
                                       {"drop_from_clean": _drop_statistic(is_subset(condition))}))
            row: dict[str, Any] = {**dict(zip(group_by, key)), "condition": condition}
            for metric in metrics:
                summary = found.get(metric, {})  # empty: a drop without a clean condition
                for stat in ("mean", "std", "ci_low", "ci_high"):
                    row[f"{metric}_{stat}"] = summary.get(stat, float("nan"))
            row["n_runs"] = n_runs
            row["n_images"] = int(sub[["fold", "sample_id"]].drop_duplicates().shape[0])
            rows.append(row)
    return pd.DataFrame(rows)


def _as_fraction_pair(correct_a: Any, correct_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.ndim != 1 or b.ndim != 1:
        raise FbenchError(f"correctness arrays must be one-dimensional, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise FbenchError(f"correctness arrays differ in length: {a.size} vs {b.size}; pair the samples first")
    out = []
    for name, arr in (("correct_a", a), ("correct_b", b)):
        try:
            values = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise FbenchError(f"{name} must be booleans or fractions in [0, 1], got {arr[:5].tolist()}") from exc
        if not (np.isfinite(values) & (values >= 0) & (values <= 1)).all():
            raise FbenchError(f"{name} must be booleans or fractions in [0, 1] (the share of seeds right), got "
                              f"values like {np.unique(values)[:5].tolist()}")
        out.append(values)
    return out[0], out[1]


def mcnemar_exact(correct_a: Any, correct_b: Any) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired per-image correctness.

    ``correct_a`` and ``correct_b`` are per test image: booleans, or the share of a system's seeds that got the
    image right (:func:`pair_predictions`). A system gets an image right when the majority of its seeds do (share
    > 1/2) and wrong when the majority do not (share < 1/2). Ties -- exactly half of the seeds right, possible only
    with an even number of seeds -- are dropped: such an image is neither right nor wrong for that system, so it is
    never discordant and, like every concordant image, does not enter the test (it still counts in the ``n`` of
    :func:`compare_architectures`).

    ``b`` = images A gets right and B wrong, ``c`` = A wrong and B right; under the null hypothesis each
    discordant image goes either way with probability 1/2, so ``p_value`` is
    ``scipy.stats.binomtest(b, b + c, 0.5)`` (two-sided); 1.0 when there are no discordant images.
    """
    a, b_ = _as_fraction_pair(correct_a, correct_b)
    b = int(np.sum((a > 0.5) & (b_ < 0.5)))
    c = int(np.sum((a < 0.5) & (b_ > 0.5)))
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "p_value": min(p, 1.0)}


def paired_bootstrap(
    correct_a: Any,
    correct_b: Any,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Paired bootstrap of the accuracy difference ``acc_a - acc_b`` over test images.

    ``correct_a`` and ``correct_b`` are per test image: booleans, or the share of a system's seeds that got the
    image right (:func:`pair_predictions`). Images are resampled with replacement, each with both systems' seeds
    together. A resample's difference depends only on how many drawn images have each per-image difference
    ``a - b`` (-1, 0, 1 with one seed; multiples of 1/seeds with more), so the n draws of each resample are taken
    as one multinomial count over those distinct values -- the same distribution as drawing n image indices,
    vectorised and seeded with ``np.random.default_rng(seed)``.

    Returns:
        ``diff`` (observed acc_a - acc_b), ``ci_low``/``ci_high`` (percentile interval at ``confidence``) and
        ``p_value``, two-sided from the bootstrap distribution: ``min(1, 2 * min(P*(diff <= 0), P*(diff >= 0)))``
        -- 1.0 for identical classifiers, small when the resampled differences keep one sign.
    """
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    a, b = _as_fraction_pair(correct_a, correct_b)
    n = a.size
    if n == 0:
        raise FbenchError("paired_bootstrap needs at least one paired image; got none")
    d = np.round(a - b, _DECIMALS)
    diff = float(d.mean())
    values, counts = np.unique(d, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=n_resamples)
    boot = np.round(draws @ values / n, _DECIMALS)
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
    """Paired per-image correctness of two systems under one condition, each image once.

    A test image is a (``view``, ``fold``, ``sample_id``) -- ``view`` and ``fold`` only when both frames have
    them: the same image under the same split. Its value for a system is the share of that system's seeds
    (``seed`` rows) that classify it correctly: 0 or 1 with one seed, 2/3 when two of three seeds get it right.
    Returned sorted by that key; its length is the number of unique test images.

    Raises:
        FbenchError: missing columns, no rows for ``condition``, a (key, seed) listed twice, or the two frames not
        covering the same images (the message gives the counts on each side).
    """
    _check_prediction_frame(pred_a, "pred_a")
    _check_prediction_frame(pred_b, "pred_b")
    keys = [c for c in ("view", "fold") if c in pred_a.columns and c in pred_b.columns] + ["sample_id"]
    sides = []
    for name, frame in (("pred_a", pred_a), ("pred_b", pred_b)):
        sub = frame[frame["condition"] == condition]
        if sub.empty:
            available = list(pd.unique(frame["condition"]))
            raise FbenchError(f"{name} has no predictions for condition {condition!r}; it has {available}")
        run_keys = [*keys, "seed"] if "seed" in sub.columns else keys
        dup = sub.duplicated(subset=run_keys)
        if dup.any():
            raise FbenchError(
                f"{name} lists {int(dup.sum())} ({', '.join(run_keys)}) key(s) more than once under {condition!r}; "
                "select one architecture/variant before pairing"
            )
        correct = sub[keys].assign(_correct=(sub["label"].to_numpy() == sub["pred"].to_numpy()).astype(float))
        sides.append(correct.groupby(keys, sort=False, dropna=False, as_index=False)["_correct"].mean())
    merged = sides[0].merge(sides[1], on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a = int((merged["_merge"] == "left_only").sum())
    only_b = int((merged["_merge"] == "right_only").sum())
    if only_a or only_b:
        both = int((merged["_merge"] == "both").sum())
        raise FbenchError(
            f"pred_a and pred_b do not cover the same test images under {condition!r} (keyed on {keys}): "
            f"{both} shared, {only_a} only in pred_a, {only_b} only in pred_b"
        )
    merged = merged.sort_values(keys, kind="stable")
    return merged["_correct_a"].to_numpy(dtype=float), merged["_correct_b"].to_numpy(dtype=float)


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
    """Compare every architecture (or architecture/variant) against ``reference`` on paired test images.

    Systems are named ``architecture`` or, when a ``variant`` column exists, ``architecture/variant``;
    ``reference`` may be given as a bare architecture name when it has one variant. Each comparison pairs unique
    test images on (view, fold, sample_id), each image's correctness averaged over the system's seeds
    (:func:`pair_predictions`): the exact McNemar test on per-image majority correctness (:func:`mcnemar_exact`)
    and a paired bootstrap that resamples images with their seeds together (:func:`paired_bootstrap`).

    Returns one row per other system, in order of first appearance, with ``system``, ``reference``, ``n``
    (unique test images), ``accuracy``, ``reference_accuracy`` (means over those images of the seed-averaged
    correctness), ``diff`` (accuracy - reference accuracy), ``ci_low``/``ci_high`` (paired bootstrap),
    ``bootstrap_p``, ``mcnemar_b`` (images the system gets right by majority and the reference wrong),
    ``mcnemar_c``, ``mcnemar_p``, ``p_holm`` (McNemar p, Holm-adjusted across the comparisons) and
    ``significant`` (``p_holm < alpha``).

    Raises:
        FbenchError: no ``architecture`` column, unknown or ambiguous reference, or misaligned images.
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
