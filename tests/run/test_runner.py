"""Suites end to end on a tiny synthetic set: cells, resume, failures, rescoring, MLflow and reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fbench.pipeline import rescore_suite, run_suite
from fbench.run import store
from fbench.run.context import Progress, RunOptions, prepare
from fbench.suite.load import load_suite

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


def smoke_suite(tmp_path: Path, *overrides: str):
    return load_suite(SMOKE, [f"output={tmp_path / 'runs'}", f"reports={tmp_path / 'reports'}", *overrides])


def options(tmp_path: Path, tiny_kdef: Path, **changes) -> RunOptions:
    base = dict(data={"kdef": str(tiny_kdef)}, tracking=False, cache_dir=tmp_path / "cache", device="cpu")
    return RunOptions(**{**base, **changes})


def test_smoke_suite_runs_logs_and_reports(tmp_path, tiny_kdef):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = run_suite(smoke_suite(tmp_path), options(tmp_path, tiny_kdef, tracking=True, tracking_uri=uri))
    assert [o.status for o in run.outcomes] == ["complete", "complete"]
    board = run.leaderboards[0]
    assert set(board.clean()["label"]) == {"lanmsff", "resnet18"}
    conditions = set(board.aggregate["condition"])
    assert {"clean", "occlusion:kind=rectangle,severity=0.25", "mask:kind=surgical"} <= conditions
    assert set(board.per_pose["pose"]) == {"FL", "HL", "S", "HR", "FR"}
    for outcome in run.outcomes:
        for name in (store.CONFIG, store.SPLIT, store.HISTORY, store.PREDICTIONS, store.METRICS,
                     store.CHECKPOINT, store.RESULT):
            assert (outcome.folder / name).is_file(), name
    markdown = run.report["markdown"].read_text()
    assert "Synthetic data" in markdown and "accuracy_by_pose.png" in markdown
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("fbench.kind") == "cell"]
    summaries = {r.data.tags["label"]: r for r in runs if r.data.tags.get("fbench.kind") == "summary"}
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 5
    assert all(r.data.tags["synthetic"] == "true" for r in runs)
    assert all("accuracy.clean" in r.data.metrics for r in children)
    # a summary run per architecture beside the cells: the leaderboard's numbers, the cells' config as params
    assert sorted(summaries) == ["lanmsff", "resnet18"]
    clean = board.clean().set_index("label")
    for label, summary in summaries.items():
        assert summary.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert summary.data.metrics["accuracy"] == pytest.approx(clean.loc[label, "accuracy_mean"])
        assert {"rank", "macs", "params", "accuracy.pose.S", "accuracy_ci_low"} <= set(summary.data.metrics)
        assert "recipe.lr" in summary.data.params and summary.data.tags["view"] == "main"


def test_second_run_trains_nothing_and_gives_the_same_leaderboard(tmp_path, tiny_kdef, monkeypatch):
    first = run_suite(smoke_suite(tmp_path), options(tmp_path, tiny_kdef, write_report=False))

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell must not be trained again")

    monkeypatch.setattr("fbench.run.cell.train_and_predict", refuse)
    second = run_suite(smoke_suite(tmp_path), options(tmp_path, tiny_kdef, write_report=False))
    assert all(o.reused for o in second.outcomes)
    assert first.leaderboards[0].aggregate.equals(second.leaderboards[0].aggregate)
    rescored = rescore_suite(smoke_suite(tmp_path), options(tmp_path, tiny_kdef, write_report=False),
                             rewrite_metrics=True)
    assert rescored.leaderboards[0].aggregate.equals(first.leaderboards[0].aggregate)


def test_cell_keys_follow_the_configuration(tmp_path, tiny_kdef):
    base = prepare(smoke_suite(tmp_path), options(tmp_path, tiny_kdef), Progress())
    again = prepare(smoke_suite(tmp_path), options(tmp_path, tiny_kdef), Progress())
    changed = prepare(smoke_suite(tmp_path, "architectures.0.recipe.lr=0.01"), options(tmp_path, tiny_kdef),
                      Progress())
    keys = [c.key for c in base.cells]
    assert keys == [c.key for c in again.cells] and len(set(keys)) == len(keys)
    assert [c.key for c in changed.cells][0] != keys[0] and [c.key for c in changed.cells][1] == keys[1]


def test_a_nan_loss_fails_its_cell_and_the_suite_goes_on(tmp_path, tiny_kdef):
    suite = smoke_suite(tmp_path, "architectures.0.recipe.lr=1e30", "architectures.0.recipe.optimizer=sgd")
    run = run_suite(suite, options(tmp_path, tiny_kdef, write_report=False))
    assert [o.status for o in run.outcomes] == ["failed", "complete"]
    assert "loss" in run.failures[0].reason and "learning rate" in run.failures[0].reason
    assert set(run.leaderboards[0].clean()["label"]) == {"resnet18"}
    again = run_suite(suite, options(tmp_path, tiny_kdef, write_report=False))
    assert all(o.reused for o in again.outcomes) and len(again.failures) == 1


def test_interrupted_run_resumes_without_retraining(tmp_path, tiny_kdef, monkeypatch):
    import fbench.run.cell as runner

    original = runner.train_and_predict
    calls = []

    def interrupt_second(cell, *args, **kwargs):
        calls.append(cell.label)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(cell, *args, **kwargs)

    monkeypatch.setattr(runner, "train_and_predict", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_suite(smoke_suite(tmp_path), options(tmp_path, tiny_kdef, write_report=False))
    monkeypatch.setattr(runner, "train_and_predict", original)
    resumed = run_suite(smoke_suite(tmp_path), options(tmp_path, tiny_kdef, write_report=False))
    assert [o.reused for o in resumed.outcomes] == [True, False]


def test_kill_9_midway_then_rerun_finishes(tmp_path, tiny_kdef):
    """The issue's acceptance check: `kill -9` during a run, and the same command completes the rest."""
    command = [sys.executable, "-m", "fbench", "run", str(SMOKE), "--data", f"kdef={tiny_kdef}",
               "--set", f"output={tmp_path / 'runs'}", "--set", f"reports={tmp_path / 'reports'}",
               "--no-tracking", "--device", "cpu"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", FBENCH_CACHE=str(tmp_path / "cache"), COLUMNS="200")
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    first_result = None
    while time.time() < deadline and process.poll() is None:
        found = list((tmp_path / "runs" / "smoke").glob("*/result.json"))
        if found:
            first_result = found[0]
            break
        time.sleep(0.2)
    assert first_result is not None, "the first cell never finished"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stamp = first_result.stat().st_mtime_ns
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert first_result.stat().st_mtime_ns == stamp  # not retrained
    assert len(list((tmp_path / "runs" / "smoke").glob("*/result.json"))) == 2
    assert "lanmsff" in completed.stdout and "resnet18" in completed.stdout


def test_every_suite_file_validates():
    from fbench.suite.load import validate_suite_file

    suites = sorted((Path(__file__).resolve().parents[2] / "suites").glob("*.yaml"))
    assert suites
    for path in suites:
        assert validate_suite_file(path) == [], path
