"""Cross-dataset suites: the cross: block validated, label alignment, and a small trained-on x tested-on run end
to end (cells, alignment records, the matrix, rescoring without retraining, the report, MLflow metric names)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fbench
from fbench.data.synth.build import SynthConfig
from fbench.data.table import LABEL_INDEX
from fbench.errors import FbenchError
from fbench.pipeline import rescore_suite
from fbench.run import store
from fbench.run.cross import SYNTHETIC_CONFIGS, source_split, target_ids
from fbench.score.alignment import align_labels, restricted_argmax
from fbench.score.cross import pair_view
from fbench.suite.load import suite_from_dict
from fbench.suite.schema import SYNTHETIC_SOURCE, SYNTHETIC_TARGET

SEVEN = range(7)  # neutral .. anger: KDEF's classes, no contempt
CONTEMPT = LABEL_INDEX["contempt"]


def _suite(tmp_path: Path, cross: dict, **extra) -> dict:
    return {"name": "cross-test", "cross": cross, "protocol": {"kind": "subject_kfold", "folds": 5,
                                                               "val_fraction": 0.2},
            "conditions": ["clean", "pose", "mask:kind=surgical"],
            "architectures": [{"name": "timm/resnet18", "label": "resnet18", "options": {"in_chans": 1},
                               "input_size": 32}],
            "seeds": [0], "budget": "smoke", "output": str(tmp_path / "runs"), "reports": str(tmp_path / "reports"),
            **extra}


# ------------------------------------------------------------------------------------------------- the schema


def test_a_cross_block_loads_and_unknown_datasets_get_a_suggestion(tmp_path):
    suite = suite_from_dict(_suite(tmp_path, {"train": ["kdef"], "test": ["kdef", "jaffe", SYNTHETIC_TARGET]}))
    assert suite.cross is not None and suite.cross.test == ["kdef", "jaffe", SYNTHETIC_TARGET]
    with pytest.raises(FbenchError) as error:
        suite_from_dict(_suite(tmp_path, {"train": ["kdef"], "test": ["jafe", "synthetic-targte"]}))
    text = str(error.value)
    assert "cross.test.0" in text and "did you mean 'jaffe'" in text
    assert "cross.test.1" in text and f"did you mean '{SYNTHETIC_TARGET}'" in text


@pytest.mark.parametrize("cross, problem", [
    ({"train": [], "test": ["kdef"]}, "cross.train"),
    ({"train": ["kdef"]}, "cross.test"),
    ({"train": ["kdef"], "test": ["kdef", "kdef"]}, "kdef listed twice"),
    ({"train": ["kdef"], "test": ["kdef"], "tested": ["jaffe"]}, "cross.tested"),
])
def test_a_matrix_needs_a_train_and_a_test_dataset_each_named_once(tmp_path, cross, problem):
    with pytest.raises(FbenchError, match=problem):
        suite_from_dict(_suite(tmp_path, cross))


def test_views_are_refused_beside_a_matrix(tmp_path):
    raw = _suite(tmp_path, {"train": ["kdef"], "test": ["kdef"]},
                 views=[{"name": "lopo", "kind": "leave_one_pose_out"}])
    with pytest.raises(FbenchError, match="views: a cross-dataset suite"):
        suite_from_dict(raw)


def test_the_built_in_suite_validates_and_is_found_as_its_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("cross-dataset", "suites/cross-dataset.yaml"):
        suite = fbench.load_suite(name)
        assert suite.cross is not None and "jaffe" in suite.cross.test and SYNTHETIC_SOURCE in suite.cross.train


# ------------------------------------------------------------------------------------------------- alignment


def test_a_seven_class_model_tested_on_a_set_with_contempt():
    target = [0, 1, 1, 2, CONTEMPT, CONTEMPT, CONTEMPT, 6]
    alignment = align_labels(SEVEN, target)
    assert alignment.scored == (0, 1, 2, 6)  # what both share: the target's classes the model knows
    assert alignment.dropped == {CONTEMPT: 3} and alignment.dropped_total == 3
    assert alignment.chance == pytest.approx(1 / 4)
    record = alignment.to_dict()
    assert record["scored_classes"] == ["neutral", "happy", "sad", "anger"]
    assert record["dropped_by_class"] == {"contempt": 3} and "contempt" in record["target_classes"]


def test_an_eight_class_model_tested_on_a_set_without_contempt_predicts_among_the_shared_classes():
    alignment = align_labels(range(8), [0, 1, 2, 3, 4, 5, 6])
    assert alignment.scored == tuple(SEVEN) and alignment.dropped_total == 0
    assert alignment.chance == pytest.approx(1 / 7)
    logits = np.zeros((2, 8))
    logits[0, CONTEMPT], logits[0, 3] = 5.0, 1.0  # contempt wins overall, surprise among the scored classes
    logits[1, 1] = 2.0
    assert restricted_argmax(logits, alignment.scored).tolist() == [3, 1]


def test_a_target_is_its_official_test_split_where_it_has_one_and_a_source_is_all_training(tiny_kdef):
    from fbench.data.locate import DatasetLocation, read_location

    table = read_location(DatasetLocation("kdef", tiny_kdef, "test"))
    assert target_ids(table) == table.frame["sample_id"].astype(str).tolist()
    marked = table.subset(table.frame.index >= 0)
    marked.frame.loc[:9, "split"] = "test"
    assert target_ids(marked) == marked.frame["sample_id"].astype(str).tolist()[:10]
    split = source_split(table, 0.2)
    assert not split.test and len(split.train) + len(split.val) == len(table)
    assert not set(split.train) & set(split.val)
    assert set(table.frame.set_index("sample_id").loc[list(split.train), "label"]) == set(SEVEN)


# ------------------------------------------------------------------------------------------------- a whole run


def _with_contempt(tiny_kdef: Path, out: Path) -> Path:
    """An image-folder set: tiny_kdef's happy and sad images, and its neutral ones filed as contempt."""
    frame = pd.read_csv(tiny_kdef / "fbench_manifest.csv")
    for folder, label in (("happy", "happy"), ("sad", "sad"), ("contempt", "neutral")):
        (out / folder).mkdir(parents=True)
        for path in frame.loc[frame["label"] == label, "path"].head(12):
            shutil.copy(tiny_kdef / path, out / folder / Path(path).name)
    return out


@pytest.fixture(scope="module")
def cross_run(tiny_kdef, tmp_path_factory):
    """Trained on tiny_kdef; tested on it (the diagonal), on a set with contempt and on a small synthetic target
    rendered under a side light: one cell, tracked to a temporary MLflow store."""
    pytest.importorskip("mlflow")
    tmp_path = tmp_path_factory.mktemp("cross")
    target = _with_contempt(tiny_kdef, tmp_path / "withcontempt")
    patch = pytest.MonkeyPatch()
    patch.setitem(SYNTHETIC_CONFIGS, SYNTHETIC_TARGET, SynthConfig(identities=2, sessions=1, image_size=(96, 80),
                                                                   seed=1, lighting="side", poses=("S", "HR")))
    patch.chdir(tmp_path)
    try:
        suite = suite_from_dict(_suite(tmp_path, {"train": ["kdef"],
                                                  "test": ["kdef", "imagefolder", SYNTHETIC_TARGET]}))
        options = {"budget": "smoke", "device": "cpu", "data": {"kdef": str(tiny_kdef), "imagefolder": str(target)},
                   "cache_dir": tmp_path / "cache", "synthetic_folder": tmp_path / "data" / "synth-kdef",
                   "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
        run = fbench.run_suite(suite, **options)
        again = rescore_suite(suite, **{**options, "tracking_uri": None, "tracking": False, "write_report": False})
    finally:
        patch.undo()
    return {"run": run, "again": again, "tmp": tmp_path, "options": options}


def test_one_model_per_training_dataset_is_scored_on_every_target(cross_run):
    run = cross_run["run"]
    assert [(o.cell.dataset, o.status) for o in run.outcomes] == [("kdef", "complete")]
    predictions = store.read_predictions(run.outcomes[0].folder / store.PREDICTIONS)
    assert set(predictions["target"]) == {"kdef", "imagefolder", SYNTHETIC_TARGET}
    assert set(predictions["condition"]) == {"clean", "mask:kind=surgical"}
    clean = run.cross[run.cross["condition"] == "clean"].set_index("test")
    assert list(clean.index) == ["kdef", "imagefolder", SYNTHETIC_TARGET]
    assert (clean["train"] == "kdef").all() and (clean["accuracy_ci_low"] <= clean["accuracy_mean"]).all()
    assert clean.loc[SYNTHETIC_TARGET, "n_images"] == 2 * 2 * 7  # the whole target: no official test split


def test_contempt_is_left_out_and_counted_and_chance_follows_the_scored_classes(cross_run):
    run = cross_run["run"]
    row = run.cross[(run.cross["condition"] == "clean") & (run.cross["test"] == "imagefolder")].iloc[0]
    assert row["scored_classes"] == ["happy", "sad"] and row["chance"] == pytest.approx(0.5)
    assert row["dropped"] == 12 and row["dropped_by_class"] == {"contempt": 12} and row["n_images"] == 24
    predictions = store.read_predictions(run.outcomes[0].folder / store.PREDICTIONS)
    scored = predictions[predictions["target"] == "imagefolder"]
    assert set(scored["label"]) == {LABEL_INDEX["happy"], LABEL_INDEX["sad"]}
    assert set(scored["pred"]) <= {LABEL_INDEX["happy"], LABEL_INDEX["sad"]}  # the best of the scored classes
    record = json.loads((run.outcomes[0].folder / store.RESULT).read_text())["cross"]["imagefolder"]
    assert record["dropped"] == 12 and record["scored_classes"] == ["happy", "sad"]
    diagonal = run.cross[(run.cross["condition"] == "clean") & (run.cross["test"] == "kdef")].iloc[0]
    assert row["in_dataset"] == diagonal["accuracy_mean"]
    assert row["drop_from_in_dataset"] == pytest.approx(diagonal["accuracy_mean"] - row["accuracy_mean"])


def test_rescoring_reads_the_stored_predictions_without_retraining(cross_run):
    run, again = cross_run["run"], cross_run["again"]
    assert all(o.reused for o in again.outcomes)
    pd.testing.assert_frame_equal(run.cross.drop(columns=["accuracy_ci_low", "accuracy_ci_high"]),
                                  again.cross.drop(columns=["accuracy_ci_low", "accuracy_ci_high"]))


def test_the_report_holds_the_matrix_with_intervals_and_scored_classes(cross_run):
    run = cross_run["run"]
    report = run.report["markdown"].read_text()
    assert "trained on" in report and "tested on" in report
    assert "| trained on ↓ / tested on → | kdef | imagefolder | synthetic-target |" in report
    assert "chance 50.0" in report and "2: happy, sad" in report and "12 (contempt 12)" in report
    assert "cross_matrix.png" in report and (run.report["markdown"].parent / "cross_matrix.png").is_file()
    assert "mask:kind=surgical" in report and "SYNTHETIC" in report
    assert (run.report["markdown"].parent / "views" / "kdef-to-imagefolder" / "report.md").is_file()
    assert "trained on" in run.report["html"].read_text()
    assert "## By head pose: trained on → tested on" in report and "| kdef → synthetic-target |" in report


def test_mlflow_holds_the_matrix_as_cross_train_test_accuracy(cross_run):
    from mlflow import MlflowClient

    run = cross_run["run"]
    client = MlflowClient(tracking_uri=cross_run["options"]["tracking_uri"])
    experiment = client.get_experiment_by_name("cross-test")
    summaries = client.search_runs([experiment.experiment_id], "tags.view = 'cross'")
    assert [found.data.tags["label"] for found in summaries] == ["resnet18"]
    metrics = summaries[0].data.metrics
    clean = run.cross[run.cross["condition"] == "clean"].set_index("test")
    for test in ("kdef", "imagefolder", SYNTHETIC_TARGET):
        assert metrics[f"cross/kdef/{test}/accuracy"] == pytest.approx(clean.loc[test, "accuracy_mean"])
    assert metrics["cross/kdef/imagefolder/chance"] == pytest.approx(0.5)
    assert metrics["cross/kdef/imagefolder/dropped"] == 12
    assert "cross/kdef/imagefolder/mask_kind_surgical/accuracy" in metrics


def test_without_any_real_location_the_two_synthetic_sets_stand_in(tmp_path, monkeypatch):
    from fbench.run.context import Progress
    from fbench.run.cross import choose_cross_datasets

    built = []
    monkeypatch.setattr("fbench.run.cross.ensure_synthetic_set",
                        lambda name, base, note: built.append(name) or base.parent / name)
    for name in ("KDEF", "JAFFE"):
        monkeypatch.delenv(f"FBENCH_DATA_{name}", raising=False)
    notes: list[str] = []
    suite = suite_from_dict(_suite(tmp_path, {"train": ["kdef"], "test": ["kdef", "jaffe"]}))
    layout = choose_cross_datasets(suite, {}, Progress(note=notes.append).note, tmp_path / "data" / "synth-kdef")
    assert (layout.train, layout.test) == ([SYNTHETIC_SOURCE], [SYNTHETIC_SOURCE, SYNTHETIC_TARGET])
    assert layout.fallback and built == [SYNTHETIC_SOURCE, SYNTHETIC_TARGET] and "SYNTHETIC DATA" in notes[0]
    off = suite.model_copy(update={"synthetic_fallback": False})
    with pytest.raises(FbenchError, match="dataset 'kdef' has no location"):
        choose_cross_datasets(off, {}, notes.append, tmp_path / "data" / "synth-kdef")


def test_pair_names_are_one_path_segment_for_family_datasets() -> None:
    assert pair_view("kdef", "jaffe") == "kdef-to-jaffe"
    assert pair_view("imagefolder/ckplus", "kdef") == "imagefolder-ckplus-to-kdef"  # no nested report folders
