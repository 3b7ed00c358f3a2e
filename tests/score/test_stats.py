"""Aggregation, bootstrap intervals and paired tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fbench.errors import FbenchError
from fbench.score.stats import (
    aggregate_runs,
    compare_architectures,
    holm_adjust,
    mcnemar_exact,
    mean_std_ci,
    pair_predictions,
    paired_bootstrap,
)

FAST = 2_000  # resamples: enough for the checks, quick on a shared machine


def test_mean_std_ci_basic_and_reproducible() -> None:
    values = [0.70, 0.72, 0.75, 0.71, 0.74, 0.69]
    s = mean_std_ci(values, n_resamples=FAST, seed=1)
    assert s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert s["n"] == 6 and s["note"] == ""
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    assert min(values) <= s["ci_low"] and s["ci_high"] <= max(values)
    assert mean_std_ci(values, n_resamples=FAST, seed=1) == s
    assert mean_std_ci(values, n_resamples=FAST, seed=2) != s


def test_mean_std_ci_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.7, 0.05, size=5)
    large = rng.normal(0.7, 0.05, size=200)
    s, l_ = mean_std_ci(small, n_resamples=FAST), mean_std_ci(large, n_resamples=FAST)
    assert (l_["ci_high"] - l_["ci_low"]) < (s["ci_high"] - s["ci_low"])


def test_mean_std_ci_degenerate_cases() -> None:
    one = mean_std_ci([0.8])
    assert one["mean"] == one["ci_low"] == one["ci_high"] == 0.8 and one["n"] == 1
    assert math.isnan(one["std"]) and "single" in one["note"]
    equal = mean_std_ci([0.5, 0.5, 0.5])
    assert equal["ci_low"] == equal["ci_high"] == 0.5 and equal["std"] == 0.0 and "equal" in equal["note"]
    with_nan = mean_std_ci([0.5, float("nan"), 0.7], n_resamples=FAST)
    assert with_nan["n"] == 2 and "dropped" in with_nan["note"]
    with pytest.raises(FbenchError):
        mean_std_ci([])
    with pytest.raises(FbenchError, match="confidence"):
        mean_std_ci([1.0, 2.0], confidence=95)


def test_aggregate_runs() -> None:
    rows = []
    for arch, base in (("a", 0.8), ("b", 0.6)):
        for fold in range(2):
            for seed in range(2):
                acc = base + 0.01 * fold + 0.005 * seed
                rows.append({"architecture": arch, "variant": "default", "condition": "clean", "fold": fold,
                             "seed": seed, "accuracy": acc, "balanced_accuracy": acc, "macro_f1": acc - 0.1})
    out = aggregate_runs(pd.DataFrame(rows), n_resamples=FAST)
    assert list(out["architecture"]) == ["a", "b"]
    assert (out["n_runs"] == 4).all()
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        for stat in ("mean", "std", "ci_low", "ci_high"):
            assert f"{metric}_{stat}" in out.columns
    assert out.loc[0, "accuracy_mean"] == pytest.approx(0.8 + 0.005 + 0.0025)
    assert out.loc[0, "accuracy_ci_low"] <= out.loc[0, "accuracy_mean"] <= out.loc[0, "accuracy_ci_high"]
    with pytest.raises(FbenchError, match="macro_f1"):
        aggregate_runs(pd.DataFrame(rows).drop(columns="macro_f1"))


def test_mcnemar_hand_computed() -> None:
    # b = 8 (A right, B wrong), c = 2 -> two-sided exact p = 2 * P(X <= 2 | n=10, 1/2) = 2 * 56/1024
    a = np.array([True] * 8 + [False] * 2 + [True] * 5 + [False] * 3)
    b = np.array([False] * 8 + [True] * 2 + [True] * 5 + [False] * 3)
    r = mcnemar_exact(a, b)
    assert (r["b"], r["c"]) == (8, 2)
    assert r["p_value"] == pytest.approx(0.109375)
    assert mcnemar_exact(a, a) == {"b": 0, "c": 0, "p_value": 1.0}
    with pytest.raises(FbenchError, match="length"):
        mcnemar_exact(a, b[:-1])


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    n = 400
    a = rng.random(n) < 0.9
    b = rng.random(n) < 0.6
    r = paired_bootstrap(a, b, n_resamples=FAST, seed=3)
    assert r["diff"] == pytest.approx(a.mean() - b.mean())
    assert 0 < r["ci_low"] <= r["diff"] <= r["ci_high"]
    assert r["p_value"] < 0.01
    assert paired_bootstrap(a, b, n_resamples=FAST, seed=3) == r
    flipped = paired_bootstrap(b, a, n_resamples=FAST, seed=3)
    assert flipped["diff"] == pytest.approx(-r["diff"]) and flipped["ci_high"] < 0
    same = paired_bootstrap(a, a, n_resamples=FAST)
    assert same == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    # noisy but equally accurate classifiers: the CI straddles zero
    c = rng.random(n) < 0.75
    d = rng.random(n) < 0.75
    r2 = paired_bootstrap(c, d, n_resamples=FAST)
    assert r2["ci_low"] < 0 < r2["ci_high"] and r2["p_value"] > 0.05


def test_holm_known_vector() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(holm_adjust(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjust([0.5, 0.9]), [1.0, 1.0])
    out = holm_adjust([0.01, np.nan, 0.02])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)
    assert holm_adjust([]).size == 0


def _synthetic_predictions() -> pd.DataFrame:
    """3 architectures x 2 folds x 2 seeds; 'strong' ~95%, 'ref' ~60%, 'twin' = ref's predictions exactly."""
    rng = np.random.default_rng(42)
    rows = []
    for fold in range(2):
        for seed in range(2):
            labels = rng.integers(0, 7, size=100)
            ids = [f"f{fold}_s{i}" for i in range(100)]
            wrong = (labels + 1) % 7
            ref_pred = np.where(rng.random(100) < 0.6, labels, wrong)
            strong_pred = np.where(rng.random(100) < 0.95, labels, wrong)
            for arch, pred in (("ref", ref_pred), ("strong", strong_pred), ("twin", ref_pred)):
                for sid, y, p in zip(ids, labels, pred):
                    rows.append((arch, "default", fold, seed, "clean", sid, int(y), int(p)))
    cols = ["architecture", "variant", "fold", "seed", "condition", "sample_id", "label", "pred"]
    return pd.DataFrame(rows, columns=cols)


def test_pair_predictions_alignment_and_errors() -> None:
    frame = _synthetic_predictions()
    ref = frame[frame["architecture"] == "ref"]
    twin = frame[frame["architecture"] == "twin"].sample(frac=1.0, random_state=0)  # shuffled rows
    ca, cb = pair_predictions(ref, twin)
    assert ca.size == 400 and np.array_equal(ca, cb)
    with pytest.raises(FbenchError, match="1 only in pred_a, 0 only in pred_b"):
        pair_predictions(ref, twin.iloc[1:])
    with pytest.raises(FbenchError, match="condition 'pose=FL'"):
        pair_predictions(ref, twin, condition="pose=FL")


def test_compare_architectures() -> None:
    frame = _synthetic_predictions()
    out = compare_architectures(frame, "ref", n_resamples=FAST)
    assert list(out["system"]) == ["strong/default", "twin/default"]
    assert (out["reference"] == "ref/default").all() and (out["n"] == 400).all()
    strong, twin = out.iloc[0], out.iloc[1]
    assert strong["diff"] == pytest.approx(strong["accuracy"] - strong["reference_accuracy"])
    assert strong["diff"] > 0.2 and strong["ci_low"] > 0
    assert strong["mcnemar_p"] < 1e-6 and bool(strong["significant"])
    assert twin["diff"] == 0.0 and twin["mcnemar_p"] == 1.0 and not bool(twin["significant"])
    np.testing.assert_allclose(out["p_holm"], holm_adjust(out["mcnemar_p"]))
    again = compare_architectures(frame, "ref/default", n_resamples=FAST)
    pd.testing.assert_frame_equal(out, again)
    with pytest.raises(FbenchError, match="systems present"):
        compare_architectures(frame, "nope")
