"""MLflow tracking: a suite with three cells in a temporary SQLite store, the no-op tracker, errors and the UI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fbench import tracking
from fbench.errors import FbenchError
from fbench.tracking import (
    MAX_PARAM_VALUE_LENGTH,
    MlflowTracker,
    Tracker,
    flatten_params,
    make_tracker,
    metric_key,
    run_ui,
    ui_command,
)

CELLS = ("lanmsff-fold0-seed0", "lanmsff-fold1-seed0", "resnet18-fold0-seed0")
EPOCHS = 3


def _history(offset: float) -> list[dict]:
    return [{"epoch": epoch, "train_loss": 2.0 - 0.5 * epoch + offset, "train_accuracy": 0.2 * epoch,
             "val_loss": 2.1 - 0.4 * epoch, "val_accuracy": 0.15 * epoch, "lr": 0.1 / epoch, "seconds": 1.5}
            for epoch in range(1, EPOCHS + 1)]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One suite, three cells, logged once for the module (creating a SQLite store takes seconds)."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{root}/mlflow.db"
    cell_folder = root / "cell"
    cell_folder.mkdir()
    (cell_folder / "metrics.json").write_text(json.dumps({"clean": {"accuracy": 0.5}}))
    (cell_folder / "confusion.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    report = root / "report.md"
    report.write_text("# leaderboard\n")
    tracker = MlflowTracker(uri)
    run_ids = []
    with tracker:
        tracker.start_suite("multiview-test", "multiview 2024", params={"protocol": {"kind": "kfold", "folds": 2}},
                            tags={"synthetic": "true", "suite": "multiview"})
        for index, name in enumerate(CELLS):
            run_ids.append(tracker.log_cell(
                name,
                params={"recipe": {"lr": 0.1, "epochs": EPOCHS, "optimizer": "sgd"},
                        "options": {"mass_att": index != 1}, "notes": "x" * 7000, "seed": 0},
                history=_history(index),
                metrics={"acc.clean": 0.5 + index / 10, "acc[mask_kind=surgical]": 0.4,
                         "drop mask_kind=surgical": 0.1 + index / 10, "macro_f1.clean": math.nan,
                         "ece.clean": math.inf},
                tags={"architecture": name.split("-")[0], "fold": index % 2, "synthetic": "true"},
                artifacts=[cell_folder / "metrics.json", cell_folder / "confusion.png", root / "missing.csv"],
            ))
        tracker.log_suite_metrics({"best.acc.clean": 0.7, "bad": math.nan})
        tracker.log_suite_artifacts([report])
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("multiview-test")
    runs = client.search_runs([experiment.experiment_id])
    return {"uri": uri, "root": root, "tracker": tracker, "client": client, "experiment": experiment,
            "runs": {run.info.run_id: run for run in runs}, "cell_ids": run_ids}


def _parent(logged: dict):
    return logged["runs"][logged["tracker"].parent_run_id]


def _children(logged: dict) -> list:
    parent_id = logged["tracker"].parent_run_id
    return [run for run in logged["runs"].values() if run.data.tags.get("mlflow.parentRunId") == parent_id]


def test_one_parent_and_three_nested_children(logged: dict) -> None:
    assert len(logged["runs"]) == 4
    parent = _parent(logged)
    assert "mlflow.parentRunId" not in parent.data.tags
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "multiview 2024"
    children = _children(logged)
    assert sorted(run.info.run_name for run in children) == sorted(CELLS)
    assert sorted(run.info.run_id for run in children) == sorted(logged["cell_ids"])
    assert all(run.info.status == "FINISHED" for run in children)
    # the same, through a search filter as the UI would run it
    found = logged["client"].search_runs([logged["experiment"].experiment_id],
                                         filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(found) == 3


def test_artifacts_stay_beside_the_database(logged: dict) -> None:
    assert logged["experiment"].artifact_location.startswith((logged["root"] / "mlartifacts").as_uri())
    for run in logged["runs"].values():
        assert run.info.artifact_uri.startswith((logged["root"] / "mlartifacts").as_uri())


def test_parent_params_tags_metrics_and_artifacts(logged: dict) -> None:
    parent = _parent(logged)
    assert parent.data.params == {"protocol.kind": "kfold", "protocol.folds": "2"}
    assert parent.data.tags["synthetic"] == "true"
    assert parent.data.tags["fbench.version"]
    assert parent.data.tags["python.version"]
    assert parent.data.metrics == {"best.acc.clean": 0.7}
    names = [item.path for item in logged["client"].list_artifacts(parent.info.run_id)]
    assert names == ["report.md"]


def test_cell_params_are_flattened_and_long_values_truncated(logged: dict) -> None:
    child = next(run for run in _children(logged) if run.info.run_name == CELLS[1])
    params = child.data.params
    assert params["recipe.lr"] == "0.1"
    assert params["recipe.epochs"] == str(EPOCHS)
    assert params["recipe.optimizer"] == "sgd"
    assert params["options.mass_att"] == "False"
    assert len(params["notes"]) == MAX_PARAM_VALUE_LENGTH
    assert params["notes"].endswith("...")


def test_cell_curves_final_metrics_tags_and_artifacts(logged: dict) -> None:
    client = logged["client"]
    child = next(run for run in _children(logged) if run.info.run_name == CELLS[2])
    run_id = child.info.run_id
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(run_id, key)
        assert sorted(point.step for point in history) == list(range(1, EPOCHS + 1)), key
    losses = {point.step: point.value for point in client.get_metric_history(run_id, "train_loss")}
    assert losses[1] == pytest.approx(2.0 - 0.5 + 2)
    metrics = child.data.metrics
    assert metrics["acc.clean"] == pytest.approx(0.7)
    assert metrics["acc_mask_kind_surgical"] == pytest.approx(0.4)
    assert metrics["drop_mask_kind_surgical"] == pytest.approx(0.3)
    # NaN and inf are skipped, not stored
    assert "macro_f1.clean" not in metrics and "ece.clean" not in metrics
    assert child.data.tags["architecture"] == "resnet18"
    assert child.data.tags["fold"] == "0"
    assert child.data.tags["fbench.kind"] == "cell"
    names = sorted(item.path for item in client.list_artifacts(run_id))
    assert names == ["confusion.png", "metrics.json"]  # the missing file is skipped with a warning
    local = client.download_artifacts(run_id, "metrics.json", str(logged["root"] / "download"))
    assert json.loads(Path(local).read_text()) == {"clean": {"accuracy": 0.5}}


def test_context_manager_ends_failed_on_an_exception(logged: dict) -> None:
    tracker = MlflowTracker(logged["uri"])
    with pytest.raises(ZeroDivisionError), tracker:
        tracker.start_suite("failing-suite", "doomed", params={}, tags={})
        raise ZeroDivisionError("a bug inside the suite")
    assert logged["client"].get_run(tracker.parent_run_id).info.status == "FAILED"
    tracker.end("FINISHED")  # already ended: nothing changes
    assert logged["client"].get_run(tracker.parent_run_id).info.status == "FAILED"


def test_context_manager_ends_killed_on_ctrl_c(logged: dict) -> None:
    tracker = MlflowTracker(logged["uri"])
    with pytest.raises(KeyboardInterrupt), tracker:
        tracker.start_suite("failing-suite", "interrupted", params={}, tags={})
        raise KeyboardInterrupt
    assert logged["client"].get_run(tracker.parent_run_id).info.status == "KILLED"
    # a second invocation reuses the experiment
    experiments = [e for e in logged["client"].search_experiments() if e.name == "failing-suite"]
    assert len(experiments) == 1


def test_logging_before_start_suite_is_a_bug(logged: dict) -> None:
    tracker = MlflowTracker(logged["uri"])
    with pytest.raises(RuntimeError, match="start_suite"):
        tracker.log_cell("x", {}, [], {}, {}, [])
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.end("DONE")


def test_flatten_params() -> None:
    flat = flatten_params({"recipe": {"lr": 0.1, "schedule": {"kind": "cosine"}}, "options": {"mass_att": True},
                           "sizes": [1, 2], "empty": {}, "none": None, "bad key=1": "v"})
    assert flat == {"recipe.lr": "0.1", "recipe.schedule.kind": "cosine", "options.mass_att": "True",
                    "sizes": "[1, 2]", "empty": "{}", "none": "None", "bad_key_1": "v"}
    assert flatten_params({"lr": 1}, prefix="recipe") == {"recipe.lr": "1"}
    long = flatten_params({"x": "y" * 10_000})["x"]
    assert len(long) == MAX_PARAM_VALUE_LENGTH and long.endswith("...")


def test_metric_key() -> None:
    assert metric_key("acc.clean") == "acc.clean"
    assert metric_key("acc[mask_kind=surgical]") == "acc_mask_kind_surgical"
    assert metric_key("drop.mask_kind=surgical") == "drop.mask_kind_surgical"
    assert metric_key("per class/happy f1") == "per_class/happy_f1"
    assert metric_key("//a/../b/") == "a/__/b"
    assert metric_key("") == "_"
    long = metric_key("k" * 400)
    assert len(long) == 250 and long != metric_key("k" * 401)


def test_the_no_op_tracker_does_nothing() -> None:
    tracker = make_tracker(False)
    assert type(tracker) is Tracker and not tracker.enabled
    with tracker:
        tracker.start_suite("e", "r", {"a": 1}, {})
        assert tracker.log_cell("c", {}, [], {"acc": 1.0}, {}, [Path("nowhere")]) is None
        tracker.log_suite_metrics({"a": 1.0})
        tracker.log_suite_artifacts([Path("nowhere")])


def test_tracking_off_never_imports_mlflow() -> None:
    code = ("import sys, fbench.tracking as t; tr = t.make_tracker(False); tr.start_suite('e', 'r', {}, {}); "
            "tr.log_cell('c', {}, [], {}, {}, []); tr.end('FINISHED'); t.flatten_params({'a': {'b': 1}}); "
            "assert 'mlflow' not in sys.modules, 'mlflow was imported'")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_missing_mlflow_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(FbenchError, match="MLflow is not installed here; install it or run with --no-tracking"):
        make_tracker(True, f"sqlite:///{tmp_path}/mlflow.db")


def test_uri_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    resolve = tracking._resolve_uri
    assert resolve(None) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert resolve("sqlite:///runs.db") == f"sqlite:///{tmp_path.resolve().as_posix()}/runs.db"
    assert resolve("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    assert resolve(None) == "https://mlflow.example.org"
    with pytest.raises(FbenchError, match="file store"):
        resolve("mlruns")


def test_ui_command_line() -> None:
    command = ui_command("sqlite:////data/mlflow.db", port=5123)
    assert command == [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:////data/mlflow.db",
                       "--host", "127.0.0.1", "--port", "5123"]


def test_ui_without_a_store_says_to_run_a_suite(tmp_path: Path) -> None:
    with pytest.raises(FbenchError, match="run a suite first"):
        run_ui(f"sqlite:///{tmp_path}/mlflow.db")
    assert not (tmp_path / "mlflow.db").exists()


def test_ui_starts_the_server(logged: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """run_ui prints the experiment's address and runs the command line (the server itself is not started)."""
    started = []

    class FakeProcess:
        def __init__(self, command: list[str], **options: object) -> None:
            started.append(command)

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(tracking.subprocess, "Popen", FakeProcess)
    assert run_ui(logged["uri"], port=0, experiment="multiview-test") == 0
    assert started == [ui_command(logged["uri"], "127.0.0.1", 0)]
    assert f"#/experiments/{logged['experiment'].experiment_id}" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["proc", "file"])
def test_an_unwritable_store_is_one_line(tmp_path: Path, where: str) -> None:
    """Places root cannot write either (tests run as root): /proc, and a file standing where a folder should be."""
    (tmp_path / "afile").write_text("not a folder")
    database = Path("/proc/mlflow.db") if where == "proc" else tmp_path / "afile" / "mlflow.db"
    with pytest.raises(FbenchError, match=f"^cannot write the MLflow store {database}.*--no-tracking") as raised:
        MlflowTracker(f"sqlite:///{database}")
    assert "\n" not in str(raised.value)


def test_a_store_that_turns_read_only_is_one_line(tmp_path: Path) -> None:
    class ReadOnly:
        def create_run(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("(sqlite3.OperationalError) attempt to write a readonly database")

    client = tracking._RetryOnLock(ReadOnly(), tmp_path / "mlflow.db")
    with pytest.raises(FbenchError, match=f"MLflow store {tmp_path / 'mlflow.db'}: readonly database; point"):
        client.create_run("0")


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """MLflow creates a new SQLite store's tables on first open; fbench opens it under a lock file, so that
    concurrent runs of a suite starting together do not fail with "table ... already exists"."""
    pytest.importorskip("mlflow")
    script = ("import sys; from fbench.tracking import MlflowTracker; t = MlflowTracker(sys.argv[1]); "
              "t.start_suite('race', 'r', {}, {}); t.end()")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    processes = [subprocess.Popen([sys.executable, "-c", script, uri], stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    client = MlflowTracker(uri).client
    assert len(client.search_runs([client.get_experiment_by_name("race").experiment_id])) == 3
    assert not [p.name for p in tmp_path.iterdir() if "lock" in p.name]
