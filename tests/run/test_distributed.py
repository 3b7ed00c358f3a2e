"""Multi-process cells under torchrun on the CPU (gloo, 2 processes): sharded evaluation is exact, complete and in
order; data-parallel training reaches the one-process accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fbench.engine.distributed import ParallelPlan
from fbench.run import store

WORKER = Path(__file__).with_name("distributed_worker.py")
SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


def torchrun(*arguments: str, processes: int = 2, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               *arguments]
    completed = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def test_a_batch_is_shared_out_whole_and_weighted_by_its_rows():
    plans = [ParallelPlan(rank, 3, rank, torch.device("cpu"), "gloo") for rank in range(3)]
    shares = [plan.share(10) for plan in plans]
    rows = [list(range(10))[share] for share, _, _ in shares]
    assert sum(rows, []) == list(range(10))
    # DDP averages the ranks' gradients: every sample of the batch then weighs 1/10, as in one process
    assert all(scale / (3 * len(r)) == pytest.approx(1 / 10) for (_, scale, _), r in zip(shares, rows))
    small = [plan.share(2) for plan in plans]  # fewer rows than ranks: all rows everywhere, counted once
    assert all(share == slice(0, 2) and scale == 1.0 for share, scale, _ in small)
    assert [counted for _, _, counted in small] == [True, False, False]
    assert [list(plan.my_batches(7)) for plan in plans] == [[0, 3, 6], [1, 4], [2, 5]]


@pytest.fixture(scope="module")
def cell_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cell folder (config, split, checkpoint) of the smoke suite's resnet18 cell on a tiny synthetic set; the
    checkpoint holds seeded, untrained weights: evaluation does not care how they were found."""
    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
    from fbench.engine import save_state
    from fbench.registry import get_architecture
    from fbench.run.context import Progress, RunOptions, prepare
    from fbench.suite.load import load_suite

    base = tmp_path_factory.mktemp("dist")
    root = base / "kdef"
    build_synthetic_kdef(root, SynthConfig(identities=10, sessions=1, image_size=(160, 128)), workers=2)
    suite = load_suite(SMOKE, [f"output={base / 'runs'}", f"reports={base / 'reports'}"], only=["resnet18"])
    prepared = prepare(suite, RunOptions(data={"kdef": str(root)}, cache_dir=base / "cache"), Progress())
    cell = prepared.cells[0]
    folder = base / "runs" / cell.suite / cell.key
    store.write_json(folder / store.CONFIG, cell.to_dict())
    prepared.splits[cell.view][cell.fold].save(folder / store.SPLIT)
    torch.manual_seed(cell.seed)
    model = get_architecture(cell.architecture).build(prepared.table.num_classes, **cell.options)
    save_state(model, folder / store.CHECKPOINT)
    return folder


def test_two_processes_predict_a_checkpoint_exactly_as_one(cell_folder, tmp_path):
    from fbench.run.predict import main, predict_cell

    cache = cell_folder.parents[2] / "cache"
    one = tmp_path / "one.csv.gz"
    assert main([str(cell_folder), "--out", str(one), "--batch-size", "16", "--cache-dir", str(cache)]) == 0
    two = tmp_path / "two.csv.gz"
    torchrun("-m", "fbench.run.predict", str(cell_folder), "--out", str(two), "--batch-size", "16",
             "--cache-dir", str(cache))
    single, sharded = store.read_predictions(one), store.read_predictions(two)
    split = json.loads((cell_folder / store.SPLIT).read_text())
    conditions = ["clean", *[c for c in json.loads((cell_folder / store.CONFIG).read_text())["conditions"]
                             if c not in ("clean", "pose")]]
    assert len(sharded) == len(split["test"]) * len(conditions)  # complete: every test sample, every condition
    assert list(sharded["condition"].drop_duplicates()) == conditions
    assert (sharded["sample_id"].tolist() == single["sample_id"].tolist())  # in order
    assert sharded["pred"].tolist() == single["pred"].tolist()
    assert sharded.equals(single)  # logits too, bit for bit: each batch is computed as one process computes it
    direct = predict_cell(cell_folder, ["clean"], batch_size=512, cache_dir=cache)
    assert direct["pred"].tolist() == single[single["condition"] == "clean"]["pred"].tolist()


@pytest.mark.slow
def test_two_process_training_reaches_the_one_process_accuracy(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one.json")], env=env, check=True, timeout=600)
    torchrun(str(WORKER), str(tmp_path / "two.json"))
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2 and two["rows"] == one["rows"] == 301
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.05 and two["accuracy"] >= 0.9
    for first, second in zip(one["history"], two["history"]):  # the same data, batches and draws: close curves
        assert second["train_loss"] == pytest.approx(first["train_loss"], rel=0.1, abs=0.01)
