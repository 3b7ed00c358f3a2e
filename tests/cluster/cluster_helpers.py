"""Helpers of the cluster tests (tests/cluster/): the smoke suite's path, ``fbench`` in a subprocess, a tiny
tuning suite, a new PostgreSQL database, waiting for a condition."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_UP = ROOT / ".ci" / "cluster-up"
CLUSTER_DIR = Path(os.environ.get("FBENCH_CLUSTER_DIR", "/tmp/fbench-cluster"))
SMOKE = ROOT / "suites" / "smoke.yaml"

# A small MLP on 16 x 16 grayscale images, found by the jobs through the suite's plugins: a trial takes a second.
TINY_PLUGIN = """
import torch.nn as nn

from fbench.contract import ArchitectureSpec, Recipe
from fbench.registry import register_architecture

SPEC = ArchitectureSpec((1, 16, 16), (0.5,), (0.5,), Recipe(optimizer="adam", lr=1e-2, epochs=2, batch_size=32))


@register_architecture("tiny_cluster", spec=SPEC)
def tiny_cluster(num_classes: int, *, hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""


def tune_args(folder: Path, kdef: Path, storage: str, trials: int, *extra: str) -> list[str]:
    """``fbench tune`` of a one-architecture suite written to ``folder`` (the tiny MLP, two epochs on 64 images
    per trial, no pruning) on ``storage``."""
    plugin = folder / "tiny_cluster_plugin.py"
    plugin.write_text(TINY_PLUGIN)
    suite = folder / "tiny.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "tiny", "dataset": "kdef", "synthetic_fallback": False, "plugins": [str(plugin)],
        "protocol": {"kind": "stratified_kfold", "folds": 3, "val_fraction": 0.2},
        "architectures": [{"name": "tiny_cluster"}], "seeds": [0],
        "output": str(folder / "runs"), "reports": str(folder / "reports"),
        "budgets": {"tune": {"max_epochs": 2, "max_train_images": 64}},
        "search": {"tiny_cluster": {"lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-1, "log": True}}},
    }))
    return ["tune", str(suite), "--arch", "tiny_cluster", "--trials", str(trials), "--seed", "0", "--pruner",
            "none", "--storage", storage, "--data", f"kdef={kdef}", "--device", "cpu", "--no-tracking",
            "--no-report", "--out", str(folder / "out"), *extra]


def new_database(url: str) -> str:
    """A new empty database on the server of ``url``: its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{url.rsplit('/', 1)[0]}/{name}"


def start_fbench(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    """``fbench ARGS`` started in ``cwd`` (one thread: the node has few cores), its output piped."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fbench.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 300, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    """Wait for a started ``fbench``; a non-zero exit (with ``check``) or a timeout fails the test with its
    output."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and completed.returncode != 0:
        pytest.fail(f"{' '.join(map(str, process.args))} exited {completed.returncode}:\n"
                    f"{stdout[-3000:]}\n{stderr[-3000:]}", pytrace=False)
    return completed


def fbench(*args: str | Path, cwd: Path, timeout: float = 300, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    """``fbench ARGS`` in ``cwd``, its output captured; a non-zero exit fails the test with the output."""
    return finish(start_fbench(*args, cwd=cwd), timeout, check)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.5) -> object:
    """Poll ``condition()`` until it returns something true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
