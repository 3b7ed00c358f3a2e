"""MLflow as the leaderboard: a summary run per architecture x view beside the cells, reused by later invocations;
experiments tagged as model training; the runs-table address that `fbench ui` prints. A temporary SQLite store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest

from fbench import tracking
from fbench.contract import Recipe
from fbench.run.cells import Cell
from fbench.score.leaderboard import Leaderboard
from fbench.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    MlflowTracker,
    Tracker,
    leaderboard_fragment,
    log_summaries,
    run_ui,
    summary_filter,
)

EXPERIMENT = "summaries-test"
OCCLUSION = "occlusion:kind=rectangle,severity=0.25"


def cell(label: str, fold: int, lr: float = 0.01, view: str = "main") -> Cell:
    return Cell(suite="s", label=label, architecture=label.split("-")[0], options={"width": 8, "attention": True},
                input_size=(1, 64, 64), recipe=Recipe(lr=lr, epochs=3), dataset="kdef", dataset_root="/nowhere",
                synthetic=True, view=view, protocol={"kind": "kfold"}, fold=fold, folds=2, seed=0,
                conditions=("clean", OCCLUSION))


def board(accuracy: dict[str, float], incomplete: tuple[str, ...] = ()) -> Leaderboard:
    rows = []
    for label, value in accuracy.items():
        rows.append({"label": label, "condition": "clean", "accuracy_mean": value, "accuracy_std": 0.02,
                     "accuracy_ci_low": value - 0.05, "accuracy_ci_high": value + 0.05,
                     "balanced_accuracy_mean": value - 0.01, "balanced_accuracy_std": math.nan,
                     "macro_f1_mean": value - 0.02, "macro_f1_std": 0.03, "drop_from_clean_mean": 0.0, "n_runs": 2})
        rows.append({"label": label, "condition": OCCLUSION, "accuracy_mean": value - 0.1, "accuracy_std": 0.02,
                     "accuracy_ci_low": value - 0.15, "accuracy_ci_high": value - 0.05,
                     "balanced_accuracy_mean": value - 0.1, "macro_f1_mean": value - 0.1,
                     "drop_from_clean_mean": 0.1, "n_runs": 2})
    poses = pd.DataFrame([{"label": label, "pose": pose, "accuracy_mean": value + shift, "accuracy_ci_low": 0.0,
                           "accuracy_ci_high": 1.0, "n_runs": 2}
                          for label, value in accuracy.items() for pose, shift in (("S", 0.1), ("FL", -0.1))])
    best = max(accuracy, key=accuracy.__getitem__)
    comparisons = pd.DataFrame([{"system": label, "reference": best, "diff": value - accuracy[best],
                                 "p_holm": 0.01, "significant": True}
                                for label, value in accuracy.items() if label != best])
    return Leaderboard("main", pd.DataFrame(rows), comparisons, poses, reference=best,
                       cells={label: "2 of 2" for label in accuracy},
                       incomplete={label: "cells 1 of 2" for label in incomplete})


CELLS = [cell("lanmsff", 0), cell("lanmsff", 1), cell("resnet18", 0), cell("resnet18", 1)]
PROFILES = {"lanmsff": {"params": 1_200_000, "macs": 141_600_000.0}, "resnet18": {"params": 11_000_000,
                                                                                  "macs": math.nan}}


def invocation(uri: str, accuracy: dict[str, float], cells: list[Cell] = CELLS, **changes) -> tuple[str, list[str]]:
    tracker = MlflowTracker(uri)
    with tracker:
        tracker.start_suite(EXPERIMENT, "run", {"suite": "s"}, {"synthetic": "true", "suite": "s"})
        ids = log_summaries(tracker, [board(accuracy, **changes)], cells, PROFILES, {"synthetic": "true"})
    assert tracker.parent_run_id is not None
    return tracker.parent_run_id, ids


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three invocations into one store: the first, a second with new numbers, a third with lanmsff's recipe
    changed and resnet18 a cell short (so no longer ranked)."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("summaries")
    uri = f"sqlite:///{root}/mlflow.db"
    first = invocation(uri, {"lanmsff": 0.61, "resnet18": 0.55})
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    first_runs = {run.info.run_id: run for run in client.search_runs([experiment.experiment_id])}
    second = invocation(uri, {"lanmsff": 0.63, "resnet18": 0.57})
    second_runs = {run.info.run_id: run for run in client.search_runs([experiment.experiment_id])}
    third = invocation(uri, {"lanmsff": 0.5, "resnet18": 0.64}, incomplete=("resnet18",),
                       cells=[cell("lanmsff", 0, lr=0.1), cell("lanmsff", 1, lr=0.1), *CELLS[2:]])
    return {"uri": uri, "client": client, "experiment": experiment, "first": first, "second": second,
            "third": third, "first_runs": first_runs, "second_runs": second_runs}


def summary_runs(runs: dict, parent: str) -> dict[str, object]:
    return {run.data.tags["label"]: run for run in runs.values()
            if run.data.tags.get("fbench.kind") == "summary" and run.data.tags.get("mlflow.parentRunId") == parent}


def test_one_summary_run_per_architecture_x_view_under_the_parent(store: dict) -> None:
    parent, ids = store["first"]
    runs = summary_runs(store["first_runs"], parent)
    assert sorted(runs) == ["lanmsff", "resnet18"] and sorted(ids) == sorted(r.info.run_id for r in runs.values())
    lanmsff = runs["lanmsff"]
    assert lanmsff.info.run_name == "lanmsff \u00b7 main" and lanmsff.info.status == "FINISHED"
    assert lanmsff.data.tags["view"] == "main" and lanmsff.data.tags["architecture"] == "lanmsff"
    assert lanmsff.data.tags["synthetic"] == "true" and lanmsff.data.tags["reference"] == "true"
    metrics = lanmsff.data.metrics
    assert metrics["accuracy"] == pytest.approx(0.61) and metrics["rank"] == 1
    assert metrics["accuracy_ci_low"] == pytest.approx(0.56) and metrics["accuracy_ci_high"] == pytest.approx(0.66)
    assert metrics["accuracy_std"] == pytest.approx(0.02) and metrics["macro_f1"] == pytest.approx(0.59)
    assert metrics["accuracy.pose.S"] == pytest.approx(0.71) and metrics["accuracy.pose.FL"] == pytest.approx(0.51)
    assert metrics["accuracy.occlusion_kind_rectangle_severity_0.25"] == pytest.approx(0.51)
    assert metrics["drop_from_clean.occlusion_kind_rectangle_severity_0.25"] == pytest.approx(0.1)
    assert metrics["params"] == 1_200_000 and metrics["macs"] == pytest.approx(141_600_000)
    assert "balanced_accuracy_std" not in metrics and "diff_vs_best" not in metrics  # NaN left out; the reference
    resnet = runs["resnet18"].data
    assert resnet.metrics["rank"] == 2 and resnet.metrics["diff_vs_best"] == pytest.approx(-0.06)
    assert "macs" not in resnet.metrics and resnet.metrics["params"] == 11_000_000
    params = lanmsff.data.params
    assert params["recipe.lr"] == "0.01" and params["options.width"] == "8" and params["input_size"] == "[1, 64, 64]"
    assert params["folds_run"] == "[0, 1]" and "fold" not in params and "dataset_root" not in params


def test_cell_runs_are_told_from_summary_runs_by_a_search(store: dict) -> None:
    found = store["client"].search_runs([store["experiment"].experiment_id], filter_string=summary_filter(),
                                        order_by=["metrics.`accuracy` DESC"])
    assert [run.data.tags["label"] for run in found] == ["resnet18", "lanmsff"]  # the latest numbers, best first
    assert len(store["client"].search_runs([store["experiment"].experiment_id])) == 3 + 2  # parents + summaries


def test_a_later_invocation_reuses_the_summary_runs_under_its_parent(store: dict) -> None:
    (_, first_ids), (parent, second_ids) = store["first"], store["second"]
    assert sorted(second_ids) == sorted(first_ids)
    runs = summary_runs(store["second_runs"], parent)
    assert sorted(runs) == ["lanmsff", "resnet18"]  # moved under the second parent, nothing left under the first
    assert not summary_runs(store["second_runs"], store["first"][0])
    assert runs["lanmsff"].data.metrics["accuracy"] == pytest.approx(0.63)  # the newer value is the latest
    assert runs["resnet18"].data.metrics["diff_vs_best"] == pytest.approx(-0.06)


def test_changed_params_or_a_number_gone_make_a_new_summary_run_and_delete_the_old(store: dict) -> None:
    """MLflow can change neither a param nor take a metric back: lanmsff's recipe changed; resnet18, a cell short,
    has no rank any more."""
    (_, second_ids), (parent, third_ids) = store["second"], store["third"]
    from mlflow.entities import ViewType

    client, experiment = store["client"], store["experiment"]
    live = client.search_runs([experiment.experiment_id], filter_string=summary_filter())
    assert len(live) == 2 and {run.data.tags["mlflow.parentRunId"] for run in live} == {parent}
    by_label = {run.data.tags["label"]: run for run in live}
    assert by_label["lanmsff"].data.params["recipe.lr"] == "0.1" and by_label["lanmsff"].data.metrics["rank"] == 1
    resnet = by_label["resnet18"].data
    assert "rank" not in resnet.metrics and resnet.tags["incomplete"] == "cells 1 of 2"
    assert not set(second_ids) & set(third_ids)
    deleted = client.search_runs([experiment.experiment_id], filter_string=summary_filter(),
                                 run_view_type=ViewType.DELETED_ONLY)
    assert sorted(run.info.run_id for run in deleted) == sorted(second_ids)


def test_experiments_are_tagged_as_model_training(store: dict, tmp_path: Path) -> None:
    assert store["experiment"].tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    client = store["client"]
    older = client.create_experiment("made-before", artifact_location=(tmp_path / "artifacts").as_uri())
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    tracker = MlflowTracker(store["uri"])
    with tracker:
        tracker.start_suite("made-before", "run", {}, {})
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_the_leaderboard_view_is_saved_in_the_experiment(store: dict) -> None:
    """As the UI's "Views" menu saves one: an envelope with the state as JSON text, columns as the UI names them."""
    envelope = json.loads(store["experiment"].tags["mlflow.sharedViewState.fbench-leaderboard"])
    assert envelope["name"] == "fbench leaderboard" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == summary_filter() and state["orderByKey"] == "metrics.`accuracy`"
    assert state["orderByAsc"] is False and state["selectedColumns"][:3] == [
        "metrics.`accuracy`", "metrics.`accuracy_ci_low`", "metrics.`accuracy_ci_high`"]
    assert leaderboard_fragment("7") == ("#/experiments/7/runs?workflowType=machine_learning"
                                         "&viewStateShareKey=fbench-leaderboard")


def test_the_leaderboard_address_filters_summary_runs_sorted_by_accuracy() -> None:
    fragment = leaderboard_fragment("7", saved_view=False)
    path, query = fragment.split("?", 1)
    assert path == "#/experiments/7/runs"
    assert parse_qs(query) == {"workflowType": ["machine_learning"], "searchFilter": ["tags.`fbench.kind` = 'summary'"],
                               "orderByKey": ["metrics.`accuracy`"], "orderByAsc": ["false"]}
    assert " " not in fragment


def test_ui_prints_the_latest_suites_leaderboard(store: dict, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    class FakeProcess:
        def __init__(self, command: list[str], **options: object) -> None:
            pass

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(tracking.subprocess, "Popen", FakeProcess)
    assert run_ui(store["uri"], port=0, experiment=EXPERIMENT) == 0
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:0/{leaderboard_fragment(store['experiment'].experiment_id)}" in out
    assert "the leaderboard" in out
    with MlflowTracker(store["uri"]) as tracker:
        tracker.start_suite("latest-suite", "run", {}, {})
    assert run_ui(store["uri"], port=0) == 0  # no experiment named: the latest suite run's, without summaries yet
    latest = store["client"].get_experiment_by_name("latest-suite")
    assert f"/#/experiments/{latest.experiment_id}/runs?workflowType=machine_learning\n" in capsys.readouterr().out


def test_no_summaries_without_tracking() -> None:
    assert log_summaries(Tracker(), [board({"a": 0.5})], [cell("a", 0)], {}, {}) == []
