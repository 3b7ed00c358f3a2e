"""fbench against a real PostgreSQL server (started by .ci/cluster-up): two tuning workers on one Optuna RDB study,
and an MLflow tracking server on PostgreSQL that two concurrent `fbench run` of one suite log to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import SMOKE, fbench, finish, free_port, new_database, start_fbench, tune_args, wait_for

pytestmark = pytest.mark.cluster


def test_two_tune_workers_on_postgresql_fill_one_study(tmp_path, tiny_kdef, postgres_url):
    optuna = pytest.importorskip("optuna")
    url = new_database(postgres_url)
    fbench(*tune_args(tmp_path, tiny_kdef, url, 4, "--workers", "2", "--executor", "local-jobs"), cwd=tmp_path,
           timeout=300)
    [summary] = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(4))  # none lost, none twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    by_worker = Counter(t.user_attrs.get("fbench.worker") for t in study.trials)
    assert by_worker == {0: 2, 1: 2}


@pytest.fixture
def mlflow_server(tmp_path: Path, postgres_url: str) -> Iterator[str]:
    """``mlflow server`` on a new PostgreSQL database, on 127.0.0.1 and a free port: its URL; stopped after."""
    pytest.importorskip("mlflow")
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", new_database(postgres_url),
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited {server.returncode}: "
                        f"{(tmp_path / 'mlflow-server.log').read_text()[-2000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 120, f"mlflow server at {url}")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_two_runs_log_one_child_run_per_cell_to_an_mlflow_server_on_postgresql(tmp_path, tiny_kdef, mlflow_server):
    """Two `fbench run` of the smoke suite at once in one folder split its cells through the cells' locks; the
    server ends with exactly one child run per cell."""
    from mlflow.tracking import MlflowClient

    args = ["run", str(SMOKE), "--data", f"kdef={tiny_kdef}", "--device", "cpu", "--no-report", "--tracking-uri",
            mlflow_server, "--set", f"output={tmp_path / 'runs'}", "--set", f"reports={tmp_path / 'reports'}"]
    runs = [start_fbench(*args, cwd=tmp_path) for _ in range(2)]
    for run in runs:
        finish(run, timeout=400)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiments = [e.experiment_id for e in client.search_experiments()]
    cells = client.search_runs(experiments, filter_string="tags.`fbench.kind` = 'cell'", max_results=1000)
    keys = Counter(run.data.tags["cell_key"] for run in cells)
    cell_folders = {path.parent.name for path in (tmp_path / "runs" / "smoke").glob("*/result.json")}
    assert len(cell_folders) == 2 and set(keys) == cell_folders
    assert set(keys.values()) == {1}, keys  # one child run per cell, none logged twice
    assert all(run.data.tags.get("status") == "complete" for run in cells)
    parents = client.search_runs(experiments, filter_string="tags.`fbench.kind` = 'suite'")
    assert len(parents) == 2  # one parent run per invocation
