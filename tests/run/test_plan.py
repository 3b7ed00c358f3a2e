"""Time-planned budgets: the plan's arithmetic, its budget-limited entries, the stored plan and the cells it makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fbench.errors import FbenchError
from fbench.pipeline import run_suite
from fbench.run import plan as plan_module
from fbench.run.context import Progress, RunOptions, prepare
from fbench.run.plan import (
    PLAN_SHARE,
    CellWork,
    Throughput,
    make_plan,
    plan_entry,
    plan_path,
    read_plan,
    store_plan,
)
from fbench.suite.load import load_suite
from fbench.suite.schema import Budget

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
BUDGET = Budget(cell_seconds=100.0, min_epochs=3, max_epochs=40, min_train_images=140)


def work(label: str = "a", view: str = "main", images: int = 2000, copies: int = 1) -> CellWork:
    return CellWork(label, view, available_images=images, val_images=0, test_images=0, eval_passes=1,
                    copies=copies, max_epochs=40)


def test_a_fast_architecture_is_capped_at_max_epochs():
    entry = plan_entry(work(), Throughput(1e6, 1e6, 64), BUDGET, 100.0, 7)
    assert (entry.epochs, entry.train_images, entry.is_limited) == (40, 2000, False)


def test_epochs_fill_the_planned_share_of_the_seconds():
    # 2,000 images at 200 rows/s: 10 s an epoch; 85 s of 100 hold 8 epochs
    entry = plan_entry(work(), Throughput(200.0, 1e6, 64), BUDGET, 100.0, 7)
    assert entry.epochs == int(100.0 * PLAN_SHARE // 10.0) == 8
    assert entry.train_images == 2000 and entry.seconds <= 100.0 * PLAN_SHARE


def test_a_slow_architecture_trains_fewer_images_and_offline_copies_count():
    # 40 rows/s, 4 rows per image: 3 epochs in 85 s leave 283 images
    entry = plan_entry(work(copies=4), Throughput(40.0, 1e6, 32), BUDGET, 100.0, 7)
    assert entry.epochs == 3 and entry.train_images == int(85.0 / 3 * 40.0 / 4)
    assert not entry.is_limited


def test_below_the_image_floor_an_architecture_is_budget_limited_with_an_estimate():
    works = [work("fast"), work("slow")]
    rates = {"fast": Throughput(200.0, 1e6, 64), "slow": Throughput(2.0, 6.0, 4)}
    calls: list[str] = []

    def probe(label):
        def run():
            calls.append(label)
            return rates[label]
        return run

    plan = make_plan("quick", BUDGET, works, {label: probe(label) for label in rates}, "cpu", "f", 7)
    assert calls == ["fast", "slow"]
    slow = plan.entry("slow", "main")
    assert slow is not None and slow.is_limited and [e.label for e in plan.limited()] == ["slow"]
    # trained as the fast one is (8 epochs x 2,000 images) at 2 rows/s: 8,000 s
    assert slow.needed_seconds == pytest.approx(8 * 2000 / 2.0)
    assert "2.2 h per cell" in slow.limited and "2.0 rows/s" in slow.limited


def test_a_stored_plan_is_read_back_only_for_its_device_and_cells(tmp_path):
    plan = make_plan("quick", BUDGET, [work()], {"a": lambda: Throughput(200.0, 1e6, 64)}, "cpu-x", "f1", 7)
    path = plan_path(tmp_path, "suite", "quick")
    store_plan(plan, path)
    again = read_plan(path, "cpu-x", "f1")
    assert again is not None and again.entries == plan.entries and again.probed == plan.probed
    assert read_plan(path, "another device", "f1") is None
    assert read_plan(path, "cpu-x", "changed cells") is None
    assert read_plan(path, None, "f1") is not None  # status, leaderboard and jobs take any device's plan
    path.write_text("{not json")
    assert read_plan(path, "cpu-x", "f1") is None


def timed_smoke(tmp_path: Path, seconds: float, floor: int = 20):
    budget = f"budgets={{quick: {{cell_seconds: {seconds}, min_train_images: {floor}, min_epochs: 1, max_epochs: 2}}}}"
    return load_suite(SMOKE, [f"output={tmp_path / 'runs'}", f"reports={tmp_path / 'reports'}", "budget=quick",
                              budget, "conditions=[clean, pose]"])


def options(tmp_path: Path, tiny_kdef: Path) -> RunOptions:
    return RunOptions(data={"kdef": str(tiny_kdef)}, tracking=False, cache_dir=tmp_path / "cache", device="cpu")


def test_a_time_planned_run_probes_once_and_resumes_on_the_same_cells(tmp_path, tiny_kdef, monkeypatch):
    suite = timed_smoke(tmp_path, 600.0)
    first = prepare(suite, options(tmp_path, tiny_kdef), Progress())
    assert first.plan is not None and not first.plan.limited()
    assert {cell.recipe.epochs for cell in first.cells} == {2}  # max_epochs caps a fast plan
    assert plan_path(tmp_path / "runs", "smoke", "quick").is_file()

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(plan_module, "timed_training", no_probe)
    again = prepare(suite, options(tmp_path, tiny_kdef), Progress())
    assert [c.key for c in again.cells] == [c.key for c in first.cells]
    stored = prepare(suite, options(tmp_path, tiny_kdef), Progress(), planning="stored")
    assert [c.key for c in stored.cells] == [c.key for c in first.cells]


def test_status_before_any_run_of_a_time_planned_budget_says_to_run_first(tmp_path, tiny_kdef):
    with pytest.raises(FbenchError, match="planned from a throughput probe.*fbench run"):
        prepare(timed_smoke(tmp_path, 60.0), options(tmp_path, tiny_kdef), Progress(), planning="stored")


def test_a_budget_limited_architecture_is_not_trained_and_is_listed_not_ranked(tmp_path, tiny_kdef, monkeypatch):
    real = plan_module.timed_training

    def slow_lanmsff(architecture, *args, **kwargs):
        rates = real(architecture, *args, **kwargs)
        return Throughput(0.01, 2.0, rates.batch_size) if architecture == "lanmsff" else rates

    monkeypatch.setattr(plan_module, "timed_training", slow_lanmsff)
    notes: list[str] = []
    run = run_suite(timed_smoke(tmp_path, 600.0), options(tmp_path, tiny_kdef), Progress(note=notes.append))
    assert {cell.label for cell in run.cells} == {"resnet18"}
    assert any(note.startswith("BUDGET-LIMITED ON THIS DEVICE: lanmsff") for note in notes)
    board = run.leaderboards[0]
    assert set(board.aggregate["label"]) == {"resnet18"}
    report = run.report["markdown"].read_text()
    assert "Budget-limited on this device" in report and "lanmsff: budget-limited on this device" in report
    assert "time-planned on" in report
    rows = (run.report["markdown"].parent / "leaderboard.csv").read_text().splitlines()
    limited = [row for row in rows if row.split(",")[2] == "lanmsff"]
    assert len(limited) == 1 and ",budget-limited," in limited[0]


def test_a_dataset_smaller_than_the_floor_does_not_limit_an_architecture_that_sees_all_of_it():
    budget = BUDGET.model_copy(update={"min_train_images": 700})
    entry = plan_entry(work(images=300), Throughput(200.0, 1e6, 64), budget, 100.0, 7)
    assert not entry.is_limited and entry.train_images == 300
