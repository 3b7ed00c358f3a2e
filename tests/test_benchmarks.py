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
    assert result["engine"]["val_seconds"] > 0 and result["engine"]["val_images"] == 4  # LANMSFF monitors val
    assert result["engine"]["setup_seconds"] > 0 and _positive(result["engine"]["call_images_per_s"])
    assert all(len(values) == 1 for values in result["round_ratios"].values())


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


def _import_benchmark(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_throughput_cpu_preset_measures_every_builtin_in_rotating_order() -> None:
    throughput = _import_benchmark("throughput")
    args = throughput.parse_args(["--device", "cpu"])
    assert args.preset == "cpu" and args.use_cpu_preset and args.repeats == 3 and args.warmup == 2
    names = {entry.partition("@")[0] for entry in args.models}
    assert {"lanmsff", "scan_cci"} <= names and len(names - {"lanmsff", "scan_cci"}) >= 2
    explicit = throughput.parse_args(["--device", "cpu", "--models", "lanmsff@64", "--steps", "8", "--repeats", "2"])
    assert not explicit.use_cpu_preset and (explicit.steps, explicit.repeats) == (8, 2)
    assert throughput.parse_args(["--device", "cpu", "--preset", "gpu"]).repeats == 1
    orders = [throughput.round_order(i) for i in range(3)]
    assert all(sorted(order) == sorted(throughput.METHODS) for order in orders)
    assert {order[0] for order in orders} == set(throughput.METHODS)  # each method leads one round


def _throughput_result(engine_over_raw: list[float]) -> dict:
    median = sorted(engine_over_raw)[(len(engine_over_raw) - 1) // 2]
    ratios = {"train_engine_over_raw": median, "train_engine_over_dataloader": 1.1, "eval_engine_over_raw": 1.0,
              "eval_engine_over_dataloader": 1.2}
    rounds = {name: [value] * len(engine_over_raw) for name, value in ratios.items()}
    rounds["train_engine_over_raw"] = engine_over_raw
    return {"model": "lanmsff", "size": 64, "batch_size": 32, "steps": 8, "offline_expansion": 4,
            "ratios": ratios, "round_ratios": rounds}


def _throughput_run(path: Path, *results: dict) -> Path:
    hardware = {"cpu": "AMD EPYC", "device": "cpu", "usable_cores": 2, "load_average": [0.5, 0.5, 0.5]}
    path.write_text(json.dumps({"benchmark": "throughput", "hardware": hardware, "results": list(results)}))
    return path


def test_compare_throughput_flags_moves_beyond_the_noise_of_the_repeats(tmp_path: Path, capsys) -> None:
    compare = _import_benchmark("compare_throughput")
    kept = _throughput_run(tmp_path / "kept.json", _throughput_result([0.97, 0.99, 1.00]))
    within = _throughput_run(tmp_path / "within.json", _throughput_result([0.96, 0.97, 0.99]))
    fell = _throughput_run(tmp_path / "fell.json", _throughput_result([0.80, 0.82, 0.84]))
    rose = _throughput_run(tmp_path / "rose.json", _throughput_result([1.10, 1.12, 1.13]))
    assert compare.main([str(kept), str(within)]) == 0
    assert "0 of 4 ratios moved" in capsys.readouterr().out
    assert compare.main([str(kept), str(fell)]) == 1
    out = capsys.readouterr().out
    assert "train_engine_over_raw" in out and "DOWN" in out and "1 of 4 ratios moved" in out
    assert compare.main([str(kept), str(rose)]) == 0
    assert " up " in capsys.readouterr().out
    single = _throughput_run(tmp_path / "single.json", _throughput_result([0.95]))
    assert compare.main([str(kept), str(single)]) == 0  # 0.04 down is within a one-round run's assumed noise
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a benchmarks/throughput.py result"):
        compare.main([str(kept), str(tmp_path / "other.json")])


def test_profile_loops_compares_the_engine_with_the_raw_loop_by_operator(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = run_blocked("benchmarks/profile_loops.py", "--model", "lanmsff@32", "--steps", "1", "--batch-size", "4",
                       "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["case"] == "lanmsff@32" and report["batch_size"] == 4 and report["steps"] == 1
    conv = report["operators"]["aten::convolution_backward"]
    assert conv["engine"][0] == conv["raw"][0] > 0  # the same training steps: as many backward convolutions
    # LANMSFF monitors validation: the engine runs more forward convolutions than the raw loop
    forward = report["operators"]["aten::convolution"]
    assert forward["engine"][0] > forward["raw"][0]
    assert report["epoch"]["val_seconds"] > 0 and "training batches" in done.stdout


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
    assert sum(cold["detections"].values()) == 35
    assert set(cold["detections"]) <= {"dlib", "frontal", "profile", "fallback"}
    assert not cold["boxes_reused"] and reuse["boxes_reused"] and reuse["detections"] == cold["detections"]
    if report["settings"]["landmark_model"]:  # the cold build again without it: Haar alone
        haar = report["results"]["haar"]
        assert sum(haar["detections"].values()) == 35 and set(haar["detections"]) <= {"frontal", "profile", "fallback"}
    assert report["load_average_end"] is None or len(report["load_average_end"]) == 3
