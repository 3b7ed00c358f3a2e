"""SIGTERM (what `kill` and SLURM send) handled like Ctrl-C: `fbench run` ends its MLflow run KILLED and exits
143, `fbench ui` stops its server and frees the port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SMOKE = Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"


def test_sigterm_during_a_run_leaves_no_mlflow_run_running(tmp_path, tiny_kdef):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "fbench", "run", str(SMOKE), "--data", f"kdef={tiny_kdef}",
               "--set", f"output={tmp_path / 'runs'}", "--set", f"reports={tmp_path / 'reports'}",
               "--tracking-uri", uri, "--device", "cpu"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", FBENCH_CACHE=str(tmp_path / "cache"))
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not list(tmp_path.glob("runs/*/*/lock.json")):
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before its first cell started"
    process.send_signal(signal.SIGTERM)  # the first cell is training
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not list(tmp_path.glob("runs/*/*/lock.json"))  # the cell's lock was given back
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert runs and {run.info.status for run in runs} == {"KILLED"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_stops_the_ui_server_and_frees_its_port(tmp_path):
    from fbench.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowTracker(uri).client.search_experiments()  # the store exists
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fbench", "ui", "--tracking-uri", uri, "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not listening(port):
        time.sleep(0.2)
    assert listening(port), process.communicate(timeout=10)[0][-2000:]
    process.send_signal(signal.SIGTERM)
    sent = time.time()
    while listening(port) and time.time() < sent + 10:
        time.sleep(0.05)
    freed = time.time() - sent
    output = process.communicate(timeout=30)[0]
    assert freed < 5, f"port {port} still served {freed:.1f} s after SIGTERM"
    assert process.returncode == 143 and "MLflow UI stopped." in output
