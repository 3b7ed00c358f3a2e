"""The benchmark scripts run end to end at CI size, without mlflow, optuna or fvcore (absent on GPU machines)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("mlflow", "optuna", "fvcore")

# Runs a script as __main__ with the blocked packages made unimportable: ``import mlflow`` raises ImportError,
# so a script that needs one of them (directly or through fbench) fails here as it would on a GPU machine.
RUNNER = """
import runpy, sys
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def run_blocked(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-c", RUNNER.format(blocked=BLOCKED), str(ROOT / script), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_environment(report: dict) -> None:
    for key in ("cpu", "usable_cores", "memory_gib", "device"):
        assert key in report["hardware"], key
    for key in ("python", "torch", "torchvision", "timm", "fbench", "git_commit"):
        assert key in report["versions"], key


def test_throughput_quick_runs_without_tracking_packages(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = run_blocked("benchmarks/throughput.py", "--quick", "--device", "cpu", "--models", "lanmsff@32",
                       "--batch-size", "4", "--steps", "2", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    _check_environment(report)
    assert report["settings"]["quick"] is True and report["settings"]["device"] == "cpu"
    (result,) = report["results"]
    assert (result["model"], result["size"], result["input"]) == ("lanmsff", 32, [1, 32, 32])
    assert result["offline_expansion"] == 4
    for method in ("engine", "raw", "dataloader"):
        for key in ("train_images_per_s", "eval_images_per_s"):
            assert _positive(result[method][key]), (method, key, result[method][key])
    for name, value in result["ratios"].items():
        assert _positive(value), (name, value)
    assert 0 <= result["dataloader"]["data_share"] <= 1
    assert 0 <= result["engine"]["data_share"] <= 1
    assert result["engine"]["train_memory_mib"] is None  # CPU: no CUDA memory figure
    assert "engine" in done.stdout and "a/b" in done.stdout


def test_throughput_model_and_size_parsing() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from throughput import Case, parse_cases
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert parse_cases(["lanmsff@64", "timm/resnet18@112+224"], None, quick=False) == [
        Case("lanmsff", 64), Case("timm/resnet18", 112), Case("timm/resnet18", 224)]
    assert parse_cases(["scan_cci"], None, quick=True) == [Case("scan_cci", 224)]
    assert parse_cases(["lanmsff"], None, quick=True) == [Case("lanmsff", 32)]
    assert parse_cases(["timm/resnet18"], [96], quick=False) == [Case("timm/resnet18", 96)]


def test_protocol_tiny_runs_through_the_cell_path(tmp_path: Path) -> None:
    out = tmp_path / "protocol.json"
    done = run_blocked("benchmarks/protocol.py", "--quick", "--protocols", "lanmsff-kdef", "--device", "cpu",
                       "--max-train-images", "8", "--threads", "1", "--workdir", str(tmp_path / "work"),
                       "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    _check_environment(report)
    (result,) = report["results"]
    assert result["protocol"] == "lanmsff-kdef" and result["images"] == 70 and result["folds_run"] == 2
    assert [cell["fold"] for cell in result["cells"]] == [0, 1]
    for cell in result["cells"]:
        assert cell["status"] == "complete", cell
        assert cell["epochs_run"] == 1 and cell["epochs_allowed"] == 1 and not cell["stopped_early"]
        assert _positive(cell["seconds"]) and 0 <= cell["test_accuracy"] <= 1
    assert _positive(result["protocol_seconds"]) and result["epochs_total"] == 2
    assert result["target_minutes"] == 15.0
    # the cells went through the runner: each folder holds its predictions and result
    cell_folders = list((tmp_path / "work" / "runs" / "bench-lanmsff-kdef").iterdir())
    assert len(cell_folders) == 2 and all((f / "result.json").is_file() for f in cell_folders)


@pytest.mark.slow
def test_protocol_scan_cci_rafdb_tiny(tmp_path: Path) -> None:
    out = tmp_path / "protocol.json"
    done = run_blocked("benchmarks/protocol.py", "--protocols", "scan_cci-rafdb", "--device", "cpu",
                       "--epochs", "1", "--images", "140", "--pool", "14", "--max-train-images", "16",
                       "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = json.loads(out.read_text())["results"]
    assert result["protocol"] == "scan_cci-rafdb" and result["input"] == [3, 224, 224]
    assert result["folds_run"] == 1 and result["cells"][0]["status"] == "complete"


@pytest.mark.slow
def test_throughput_every_default_model_quick(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = run_blocked("benchmarks/throughput.py", "--quick", "--device", "cpu", "--batch-size", "2",
                       "--steps", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert [(r["model"], r["size"]) for r in results] == [("lanmsff", 32), ("timm/resnet18", 32),
                                                           ("scan_cci", 224)]


def test_prepare_quick_reports_rates_and_detections(tmp_path: Path) -> None:
    out = tmp_path / "prepare.json"
    done = run_blocked("benchmarks/prepare.py", "--quick", "--workers", "2", "--out", str(out), timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    _check_environment(report)
    assert report["settings"]["images"] == 35 and report["settings"]["input"] == [1, 32, 32]
    cold, reuse = report["results"]["cold"], report["results"]["reuse"]
    for result in (cold, reuse):
        assert _positive(result["images_per_s"]) and _positive(result["cpu_ms_per_image"])
    assert sum(cold["detections"].values()) == 35 and set(cold["detections"]) <= {"frontal", "profile", "fallback"}
    assert not cold["boxes_reused"] and reuse["boxes_reused"] and reuse["detections"] == cold["detections"]
    assert report["load_average_end"] is None or len(report["load_average_end"]) == 3
