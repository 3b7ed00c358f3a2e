"""Aggregation, bootstrap intervals and paired tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fbench.errors import FbenchError
from fbench.score.leaderboard import build_leaderboards
from fbench.score.metrics import per_cell_metrics
from fbench.score.stats import (
    INTERVAL_METRICS,
    aggregate_predictions,
    aggregate_runs,
    compare_architectures,
    hierarchical_bootstrap,
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
    # issue 13: each test image once (2 folds x 100 images), its correctness averaged over the 2 seeds
    assert ca.size == 200 and np.array_equal(ca, cb)
    assert set(np.unique(ca)) <= {0.0, 0.5, 1.0}
    one_seed = frame[frame["seed"] == 0]
    assert pair_predictions(one_seed[one_seed["architecture"] == "ref"], twin)[0].size == 200
    with pytest.raises(FbenchError, match="1 only in pred_a, 0 only in pred_b"):
        pair_predictions(ref, twin[twin["sample_id"] != "f0_s0"])  # the image gone under every seed
    with pytest.raises(FbenchError, match="more than once"):
        pair_predictions(pd.concat([ref, ref.iloc[:1]]), twin)
    with pytest.raises(FbenchError, match="condition 'pose=FL'"):
        pair_predictions(ref, twin, condition="pose=FL")


def test_compare_architectures() -> None:
    frame = _synthetic_predictions()
    out = compare_architectures(frame, "ref", n_resamples=FAST)
    assert list(out["system"]) == ["strong/default", "twin/default"]
    assert (out["reference"] == "ref/default").all() and (out["n"] == 200).all()  # unique images (issue 13)
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


# ---------------------------------------------------------------- issue 13: each test image counted once


def _accuracy_of(counts: np.ndarray) -> np.ndarray:
    return counts[..., 1] / counts.sum(axis=-1)


def _runs(correct_by_run: dict[tuple[int, int], np.ndarray]) -> pd.DataFrame:
    """(fold, seed) -> per-image correctness as a kinds frame (kind 1 = right); image i of fold f is f"f{f}i{i}"."""
    frames = [pd.DataFrame({"fold": fold, "seed": seed, "sample_id": [f"f{fold}i{i}" for i in range(len(right))],
                            "kind": np.asarray(right, dtype=np.int64)})
              for (fold, seed), right in correct_by_run.items()]
    return pd.concat(frames, ignore_index=True)


def _width(summary: dict) -> float:
    return summary["ci_high"] - summary["ci_low"]


def test_one_run_interval_is_the_per_image_bootstrap() -> None:
    right = np.arange(490) < 361  # 73.7 %, the single-run case
    one = hierarchical_bootstrap(_runs({(0, 0): right}), 2, {"acc": _accuracy_of}, n_resamples=FAST, seed=1)["acc"]
    assert one["mean"] == pytest.approx(361 / 490) and one["n_runs"] == 1 and one["n_images"] == 490
    assert one["ci_low"] < one["mean"] < one["ci_high"]
    se = np.sqrt(one["mean"] * (1 - one["mean"]) / 490)  # binomial: the interval is about +-1.96 se
    assert 2 * 1.6 * se < _width(one) < 2 * 2.3 * se
    again = hierarchical_bootstrap(_runs({(0, 0): right}), 2, {"acc": _accuracy_of}, n_resamples=FAST, seed=1)
    assert (again["acc"]["ci_low"], again["acc"]["ci_high"]) == (one["ci_low"], one["ci_high"])
    assert math.isnan(one["std"])  # one run: no spread between runs to estimate
    # zero width only when every resample is 0 or 100 %
    perfect = hierarchical_bootstrap(_runs({(0, 0): np.ones(50, bool)}), 2, {"acc": _accuracy_of}, n_resamples=50)
    assert perfect["acc"]["ci_low"] == perfect["acc"]["ci_high"] == 1.0


def test_several_runs_carry_the_spread_between_runs() -> None:
    images = np.arange(300)
    single = hierarchical_bootstrap(_runs({(0, 0): images < 225}), 2, {"acc": _accuracy_of}, n_resamples=FAST)
    spread = hierarchical_bootstrap(_runs({(0, 0): images < 180, (0, 1): images < 225, (0, 2): images < 270}), 2,
                                    {"acc": _accuracy_of}, n_resamples=FAST)
    assert spread["acc"]["mean"] == pytest.approx(0.75) and spread["acc"]["n_runs"] == 3
    assert spread["acc"]["n_images"] == 300  # three seeds of one fold: the same 300 images
    assert _width(spread["acc"]) > 2 * _width(single["acc"])
    # folds too: two folds at 60 % and 90 % are wider than either alone
    folds = hierarchical_bootstrap(_runs({(0, 0): images < 180, (1, 0): images < 270}), 2, {"acc": _accuracy_of},
                                   n_resamples=FAST)
    assert folds["acc"]["n_images"] == 600 and _width(folds["acc"]) > 2 * _width(single["acc"])


def test_identical_seeds_give_the_interval_of_one_seed() -> None:
    rng = np.random.default_rng(5)
    one = {(fold, 0): rng.random(200) < 0.7 for fold in range(3)}
    three = {(fold, seed): right for (fold, _), right in one.items() for seed in range(3)}
    a = hierarchical_bootstrap(_runs(one), 2, {"acc": _accuracy_of}, n_resamples=FAST, seed=3)["acc"]
    b = hierarchical_bootstrap(_runs(three), 2, {"acc": _accuracy_of}, n_resamples=FAST, seed=3)["acc"]
    assert (a["n_runs"], b["n_runs"], a["n_images"], b["n_images"]) == (3, 9, 600, 600)
    for stat in ("mean", "ci_low", "ci_high"):
        assert b[stat] == pytest.approx(a[stat], rel=1e-12, abs=1e-12)


def test_hierarchical_bootstrap_bad_input() -> None:
    kinds = _runs({(0, 0): np.ones(5, bool)})
    with pytest.raises(FbenchError, match="listed twice"):
        hierarchical_bootstrap(pd.concat([kinds, kinds.iloc[:1]]), 2, {"acc": _accuracy_of})
    with pytest.raises(FbenchError, match="0..1"):
        hierarchical_bootstrap(kinds.assign(kind=2), 2, {"acc": _accuracy_of})
    with pytest.raises(FbenchError, match="seed"):
        hierarchical_bootstrap(kinds, 2, {"acc": _accuracy_of}, seed=-1)


def _predictions(seeds: int = 2) -> pd.DataFrame:
    """Two architectures, 2 folds x ``seeds`` seeds x 60 images, clean, an occlusion and a 20-image subset."""
    rng = np.random.default_rng(7)
    rows = []
    for arch, skill in (("a", 0.8), ("b", 0.6)):
        for fold in range(2):
            labels = np.arange(60) % 4
            for seed in range(seeds):
                for condition, drop in (("clean", 0.0), ("occlusion:kind=rectangle,severity=0.25", 0.2)):
                    right = rng.random(60) < skill - drop
                    preds = np.where(right, labels, (labels + 1 + rng.integers(0, 3, 60)) % 4)
                    for i in range(60):
                        rows.append((arch, fold, seed, condition, f"f{fold}i{i}", labels[i], preds[i]))
                        if condition == "clean" and i < 20:
                            rows.append((arch, fold, seed, "subset:occlusion", f"f{fold}i{i}", labels[i], preds[i]))
    return pd.DataFrame(rows, columns=["architecture", "fold", "seed", "condition", "sample_id", "label", "pred"])


def test_aggregate_predictions_means_are_the_per_run_metrics() -> None:
    predictions = _predictions()
    out = aggregate_predictions(predictions, 4, n_resamples=200)
    assert list(zip(out["architecture"], out["condition"]))[:3] == [
        ("a", "clean"), ("a", "subset:occlusion"), ("a", "occlusion:kind=rectangle,severity=0.25")]
    assert (out["n_runs"] == 4).all()
    assert list(out["n_images"]) == [120, 40, 120] * 2
    runs = per_cell_metrics(predictions, 4, by=["architecture", "fold", "seed"])
    expected = runs.groupby(["architecture", "condition"], sort=False)
    for _, row in out.iterrows():
        per_run = expected.get_group((row["architecture"], row["condition"]))
        for metric in INTERVAL_METRICS:
            assert row[f"{metric}_mean"] == pytest.approx(per_run[metric].mean(), abs=1e-12), metric
            assert row[f"{metric}_std"] == pytest.approx(per_run[metric].std(ddof=1), abs=1e-12), metric
            if row["condition"] != "clean":
                assert row[f"{metric}_ci_low"] < row[f"{metric}_mean"] < row[f"{metric}_ci_high"], metric
    clean = out[out["condition"] == "clean"]
    assert (clean["drop_from_clean_ci_low"] == 0).all() and (clean["drop_from_clean_ci_high"] == 0).all()
    pd.testing.assert_frame_equal(aggregate_predictions(predictions, 4, n_resamples=200), out)
    with pytest.raises(FbenchError, match="no interval"):
        aggregate_predictions(predictions, 4, metrics=["accuracy", "auc"])


def test_identical_seeds_give_the_p_values_of_one_seed() -> None:
    one = _predictions(seeds=1)
    one = one[one["condition"] == "clean"]
    three = pd.concat([one.assign(seed=seed) for seed in range(3)], ignore_index=True)
    a = compare_architectures(one, "a", n_resamples=FAST, seed=4)
    b = compare_architectures(three, "a", n_resamples=FAST, seed=4)
    assert int(a.loc[0, "n"]) == int(b.loc[0, "n"]) == 120  # unique test images: 2 folds x 60
    assert a.loc[0, "mcnemar_p"] < 0.05  # a real difference, so equal p-values are not a pair of 1.0s
    pd.testing.assert_frame_equal(a, b)
    # (pairing on (fold, seed, sample) counted every image three times: n 360 and a smaller p)
    assert paired_bootstrap(*pair_predictions(three[three["architecture"] == "b"],
                                              three[three["architecture"] == "a"]), seed=4) == \
        paired_bootstrap(*pair_predictions(one[one["architecture"] == "b"], one[one["architecture"] == "a"]), seed=4)


def test_mcnemar_on_majority_correctness_drops_ties() -> None:
    share_a = np.array([1.0, 2 / 3, 0.5, 0.0, 1.0])
    share_b = np.array([0.0, 1 / 3, 0.0, 1.0, 0.5])
    r = mcnemar_exact(share_a, share_b)
    assert (r["b"], r["c"]) == (2, 1)  # images 0 and 1 for A, image 3 for B; the ties (2, 4) drop out
    assert r["p_value"] == pytest.approx(1.0)
    with pytest.raises(FbenchError, match=r"\[0, 1\]"):
        mcnemar_exact(np.array([1.5]), np.array([0.0]))
    boot = paired_bootstrap(share_a, share_b, n_resamples=FAST)
    assert boot["diff"] == pytest.approx(np.mean(share_a - share_b))


def test_single_run_leaderboard_has_no_zero_width_interval() -> None:
    predictions = _predictions(seeds=1)
    predictions = predictions[predictions["fold"] == 0].assign(view="main", pose="S")
    board = build_leaderboards(predictions, 4, ("w", "x", "y", "z"), n_resamples=200)[0]
    clean = board.clean()
    assert (clean["n_runs"] == 1).all()
    assert (clean["accuracy_ci_low"] < clean["accuracy_mean"]).all()
    assert (clean["accuracy_mean"] < clean["accuracy_ci_high"]).all()
    assert (board.per_pose["accuracy_ci_low"] < board.per_pose["accuracy_ci_high"]).all()
    assert (board.comparisons["n"] == 60).all()
