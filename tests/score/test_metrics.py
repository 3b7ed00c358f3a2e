"""Metrics from per-sample predictions, against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fbench.errors import FbenchError
from fbench.score.metrics import (
    classification_metrics,
    condition_metrics,
    confusion_matrix,
    per_cell_metrics,
    per_group_accuracy,
)

# 3 classes; 8 samples.
LABELS = [0, 0, 0, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 1, 2, 2, 2, 0]
# confusion (rows = true): [[2,1,0],[0,1,1],[1,0,2]]
# recall: 2/3, 1/2, 2/3 ; precision: 2/3, 1/2, 2/3 -> F1 per class = recall here


def test_classification_metrics_hand_computed() -> None:
    m = classification_metrics(LABELS, PREDS, 3)
    assert m["count"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert m["per_class_recall"] == pytest.approx({"neutral": 2 / 3, "happy": 0.5, "sad": 2 / 3})


def test_macro_f1_with_unequal_precision() -> None:
    # class 0: tp=2, fp=1, fn=0 -> P=2/3, R=1, F1=0.8 ; class 1: tp=1, fp=0, fn=1 -> P=1, R=1/2, F1=2/3
    m = classification_metrics([0, 0, 1, 1], [0, 0, 0, 1], 2, label_names=["a", "b"])
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["per_class_recall"] == {"a": 1.0, "b": 0.5}


def test_absent_class_excluded_from_averages() -> None:
    # 4 classes; class 3 never occurs in labels but is predicted once (wrongly, for a class-0 sample).
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 3, 1, 1, 2, 0]
    m = classification_metrics(labels, preds, 4)
    # recall: class0 1/2, class1 1, class2 1/2 -> mean over present classes only
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # F1: class0 P=1/2 R=1/2 -> 1/2; class1 1; class2 P=1 R=1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert math.isnan(m["per_class_recall"]["surprise"])
    assert len(m["confusion"]) == 4 and m["confusion"][0][3] == 1 and sum(m["confusion"][3]) == 0


def test_classification_metrics_errors() -> None:
    with pytest.raises(FbenchError, match="outside 0..2"):
        classification_metrics([0, 1, 3], [0, 1, 2], 3)
    with pytest.raises(FbenchError, match="preds"):
        classification_metrics([0, 1, 2], [0, -1, 2], 3)
    with pytest.raises(FbenchError, match="empty"):
        classification_metrics([], [], 3)
    with pytest.raises(FbenchError, match="length"):
        classification_metrics([0, 1], [0], 3)


def _frame() -> pd.DataFrame:
    rows = []
    # clean: 4 samples, s0..s3, 3 correct (s3 wrong)
    for sid, label, pred, pose in [("s0", 0, 0, "S"), ("s1", 1, 1, "FL"), ("s2", 2, 2, "S"), ("s3", 1, 0, "FL")]:
        rows.append(("clean", sid, label, pred, pose))
    # occluded: only s0, s1, s2 (+ an extra s9 not in clean); s0 wrong, s1 right, s2 wrong, s9 right
    for sid, label, pred, pose in [("s0", 0, 1, "S"), ("s1", 1, 1, "FL"), ("s2", 2, 0, "S"), ("s9", 0, 0, "S")]:
        rows.append(("occlusion:kind=rectangle,severity=0.25", sid, label, pred, pose))
    # pose condition listed before clean in the frame to check ordering
    rows.insert(0, ("pose=FL", "s1", 1, 1, "FL"))
    return pd.DataFrame(rows, columns=["condition", "sample_id", "label", "pred", "pose"])


def test_condition_metrics_order_and_paired_drop() -> None:
    out = condition_metrics(_frame(), 3)
    assert list(out["condition"]) == ["clean", "pose=FL", "occlusion:kind=rectangle,severity=0.25"]
    clean, pose, occ = (out.iloc[i] for i in range(3))
    assert clean["accuracy"] == pytest.approx(0.75) and clean["n"] == 4 and clean["drop_from_clean"] == 0.0
    assert occ["accuracy"] == pytest.approx(0.5) and occ["n"] == 4
    # paired on s0, s1, s2: clean 3/3, occluded 1/3
    assert occ["n_paired"] == 3
    assert occ["drop_from_clean"] == pytest.approx(1.0 - 1 / 3)
    assert pose["drop_from_clean"] == pytest.approx(0.0)
    assert {"balanced_accuracy", "macro_f1", "recall_neutral", "recall_happy", "recall_sad"} <= set(out.columns)
    assert clean["recall_happy"] == pytest.approx(0.5)


def test_condition_metrics_without_clean_has_nan_drop() -> None:
    frame = _frame()
    out = condition_metrics(frame[frame["condition"] != "clean"], 3)
    assert out["drop_from_clean"].isna().all()


def test_condition_metrics_pairs_within_runs() -> None:
    a = _frame().assign(fold=0, seed=0)
    b = _frame().assign(fold=1, seed=0)
    b.loc[b["condition"] == "clean", "pred"] = b.loc[b["condition"] == "clean", "label"]  # fold 1 clean all right
    both = pd.concat([a, b], ignore_index=True)
    out = condition_metrics(both, 3).set_index("condition")
    # paired: fold0 clean 3/3 vs occ 1/3 on s0..s2 ; fold1 clean 3/3 vs occ 1/3 -> drop 2/3
    assert out.loc["occlusion:kind=rectangle,severity=0.25", "n_paired"] == 6
    assert out.loc["occlusion:kind=rectangle,severity=0.25", "drop_from_clean"] == pytest.approx(2 / 3)
    per_cell = per_cell_metrics(both, 3)
    assert list(per_cell.columns[:2]) == ["fold", "seed"] and len(per_cell) == 6
    assert per_cell.loc[(per_cell["fold"] == 1) & (per_cell["condition"] == "clean"), "accuracy"].item() == 1.0


def test_condition_metrics_rejects_duplicates() -> None:
    frame = _frame()
    with pytest.raises(FbenchError, match="duplicate"):
        condition_metrics(pd.concat([frame, frame]), 3)


def test_per_group_accuracy() -> None:
    out = per_group_accuracy(_frame(), by="pose")
    assert list(out.columns) == ["condition", "pose", "n", "accuracy"]
    got = {(r.condition, r.pose): (r.n, r.accuracy) for r in out.itertuples()}
    assert got[("clean", "S")] == (2, 1.0)
    assert got[("clean", "FL")] == (2, 0.5)
    assert got[("occlusion:kind=rectangle,severity=0.25", "S")] == (3, pytest.approx(1 / 3))
    assert out["condition"].iloc[0] == "clean"
    with pytest.raises(FbenchError, match="subject"):
        per_group_accuracy(_frame(), by="subject")


def test_confusion_matrix() -> None:
    frame = pd.DataFrame(
        {"condition": "clean", "sample_id": [f"s{i}" for i in range(8)], "label": LABELS, "pred": PREDS}
    )
    cm = confusion_matrix(frame, "clean", 3)
    assert isinstance(cm, np.ndarray)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    with_logits = frame.assign(logit_0=0.0, logit_1=0.0, logit_2=0.0, logit_3=0.0)
    assert confusion_matrix(with_logits).shape == (4, 4)
    with pytest.raises(FbenchError, match="pose=FL"):
        confusion_matrix(frame, "pose=FL", 3)
    with pytest.raises(FbenchError, match="num_classes"):
        confusion_matrix(frame)


def test_frame_errors() -> None:
    frame = _frame()
    with pytest.raises(FbenchError, match=r"\['pred'\]"):
        condition_metrics(frame.drop(columns="pred"), 3)
    with pytest.raises(FbenchError, match="empty"):
        condition_metrics(frame.iloc[:0], 3)
    bad = frame.copy()
    bad.loc[0, "pred"] = 7
    with pytest.raises(FbenchError, match="outside 0..2"):
        condition_metrics(bad, 3)
    with pytest.raises(FbenchError, match="label_names"):
        condition_metrics(frame, 3, label_names=["a", "b"])
