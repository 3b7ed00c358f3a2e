"""subset:NAME conditions: clean predictions of a dataset's tagged test samples, scored against the whole set."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fbench.contract import Recipe
from fbench.data.table import REQUIRED_COLUMNS, SampleTable
from fbench.run.cell import subset_predictions
from fbench.run.cells import Cell
from fbench.score.metrics import condition_metrics
from fbench.suite.load import load_suite, validate_suite_file


def table_with_tags() -> SampleTable:
    ids = [f"test_{i}" for i in range(6)]
    frame = pd.DataFrame({"sample_id": ids, "path": ids, "index": -1, "label": [0, 1, 2, 0, 1, 2], "subject": "",
                          "pose": "", "yaw": np.nan, "split": "test"})[list(REQUIRED_COLUMNS)]
    frame["cond_occlusion"] = [True, True, False, False, False, False]
    return SampleTable("tagged", "/nowhere", frame, num_classes=3)


def clean_predictions() -> pd.DataFrame:
    ids = [f"test_{i}" for i in range(6)]
    return pd.DataFrame({"condition": "clean", "sample_id": ids, "label": [0, 1, 2, 0, 1, 2],
                         "pred": [1, 1, 2, 0, 1, 2], "pose": "", "subject": "",
                         "logit_0": 0.0, "logit_1": 0.0, "logit_2": 0.0})


def cell(conditions: tuple[str, ...]) -> Cell:
    return Cell(suite="s", label="a", architecture="lanmsff", options={}, input_size=(1, 64, 64), recipe=Recipe(),
                dataset="tagged", dataset_root="/nowhere", synthetic=False, view="main", protocol={}, fold=0,
                folds=1, seed=0, conditions=conditions)


def test_subset_rows_are_the_tagged_clean_predictions_and_drop_is_against_the_whole_set():
    subset_cell = cell(("clean", "subset:occlusion", "subset:pose_gt30"))
    assert subset_cell.subsets == ("subset:occlusion", "subset:pose_gt30") and subset_cell.perturbations == ()
    clean = clean_predictions()
    parts = subset_predictions(subset_cell, clean, table_with_tags())
    assert len(parts) == 1  # no sample is tagged pose_gt30: left out
    assert list(parts[0]["sample_id"]) == ["test_0", "test_1"] and set(parts[0]["condition"]) == {"subset:occlusion"}
    metrics = condition_metrics(pd.concat([clean, *parts], ignore_index=True), 3).set_index("condition")
    assert metrics.loc["subset:occlusion", "accuracy"] == 0.5
    assert abs(metrics.loc["subset:occlusion", "drop_from_clean"] - (5 / 6 - 0.5)) < 1e-12


def test_subset_names_are_checked(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nconditions: [clean, 'subset:occlusion', 'subset:Bad Name']\n"
                    "architectures: [{name: lanmsff}]\n")
    problems = validate_suite_file(path)
    assert len(problems) == 1 and "conditions.2" in problems[0] and "cond_<name>" in problems[0]
    path.write_text("name: s\ntrain_conditions: ['subset:occlusion']\narchitectures: [{name: lanmsff}]\n")
    assert any("not a training perturbation" in p for p in validate_suite_file(path))
    path.write_text("name: s\nconditions: [clean, 'subset:occlusion']\narchitectures: [{name: lanmsff}]\n")
    assert load_suite(path).conditions == ["clean", "subset:occlusion"]
