"""Cells as submitit jobs: the debug and local executors run the cluster code path on a tiny synthetic set."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from fbench.cli import main
from fbench.pipeline import run_suite
from fbench.run import store
from fbench.run.context import RunOptions
from fbench.suite.load import load_suite

pytest.importorskip("submitit")

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, tiny_kdef: Path, cache_dir: Path):
    """The smoke suite run by the default local executor: the reference leaderboard."""
    folder = tmp_path_factory.mktemp("local")
    return run_suite(smoke_suite(folder), options(tiny_kdef, cache_dir))


def smoke_suite(folder: Path, *overrides: str):
    return load_suite(SMOKE, [f"output={folder / 'runs'}", f"reports={folder / 'reports'}", *overrides])


def options(tiny_kdef: Path, cache_dir: Path, **changes) -> RunOptions:
    base = dict(data={"kdef": str(tiny_kdef)}, tracking=False, cache_dir=cache_dir, device="cpu", write_report=False)
    return RunOptions(**{**base, **changes})


def same_leaderboard(first, second) -> None:
    import pandas.testing

    left, right = first.leaderboards[0].aggregate, second.leaderboards[0].aggregate
    pandas.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True))


def test_debug_executor_runs_the_job_path_and_gives_the_local_leaderboard(tmp_path, tiny_kdef, cache_dir, local_run):
    run = run_suite(smoke_suite(tmp_path), options(tiny_kdef, cache_dir, executor="debug"))
    assert [o.status for o in run.outcomes] == ["complete", "complete"]
    same_leaderboard(local_run, run)
    jobs = store.read_json(tmp_path / "runs" / "smoke" / "jobs.json")["cells"]
    assert {entry["state"] for entry in jobs.values()} == {"finished"}
    assert all(entry["job_id"].startswith("DEBUG_") and entry["executor"] == "debug" for entry in jobs.values())
    for outcome in run.outcomes:  # the job recorded itself in the cell's folder
        assert (outcome.folder / "job.json").is_file()
    again = run_suite(smoke_suite(tmp_path), options(tiny_kdef, cache_dir, executor="debug"))
    assert all(o.reused for o in again.outcomes)


def test_checkpointed_job_resubmits_the_same_cell_and_skips_finished_ones(tmp_path, tiny_kdef, cache_dir):
    """submitit calls ``checkpoint`` on preemption and runs what it returns: the same cell, started again."""
    import submitit

    from fbench.run.context import Progress, RunContext, prepare
    from fbench.run.jobs import CellJob, JobSpec

    suite = smoke_suite(tmp_path)
    opts = options(tiny_kdef, cache_dir)
    prepared = prepare(suite, opts, Progress())
    context = RunContext(suite, prepared.table, Path(suite.output), None, prepared.splits)
    job = CellJob(JobSpec(suite, opts, os.getcwd(), executor="debug"))
    first, second = prepared.cells
    executor = submitit.DebugExecutor(tmp_path / "jobs")
    assert executor.submit(job, first.key).result()["status"] == "complete"
    stamp = (context.folder(first) / store.RESULT).stat().st_mtime_ns
    (context.folder(second)).mkdir(parents=True)
    (context.folder(second) / store.CONFIG).write_text("{}")  # a cell cut short by the preemption
    for key in (first.key, second.key):
        requeued = job.checkpoint(key)
        summary = executor.submit(requeued.function, *requeued.args).result()
        assert summary["status"] == "complete"
        assert summary["reused"] is (key == first.key)
    assert (context.folder(first) / store.RESULT).stat().st_mtime_ns == stamp


def test_local_jobs_two_at_once_log_to_one_sqlite_store(tmp_path, tiny_kdef, cache_dir, local_run):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = run_suite(smoke_suite(tmp_path), options(tiny_kdef, cache_dir, executor="local-jobs", tracking=True,
                                                   tracking_uri=uri, resources={"max_parallel": 2}))
    assert [o.status for o in run.outcomes] == ["complete", "complete"]
    assert all(o.logged for o in run.outcomes)  # each job logged its own child run
    same_leaderboard(local_run, run)
    jobs = store.read_json(tmp_path / "runs" / "smoke" / "jobs.json")["cells"]
    assert len({entry["job_id"] for entry in jobs.values()}) == 2
    assert all(Path(entry["stdout"]).is_file() for entry in jobs.values())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("fbench.kind") == "cell"]  # beside a summary run per architecture
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all("accuracy.clean" in r.data.metrics and r.info.status == "FINISHED" for r in children)


def test_preempted_local_job_is_requeued_and_finishes(tmp_path, tiny_kdef, cache_dir):
    """SIGUSR2 (SLURM's warning before preemption, as submitit asks for it) while the second cell trains: the job
    requeues itself, the cell starts again and finishes; the first cell is not trained again. The second cell
    trains for 12 epochs on all its images, so that the signal finds it training on any machine."""
    suite = smoke_suite(tmp_path, "architectures.0.recipe.epochs=1", "budgets.smoke.max_epochs=12",
                        "budgets.smoke.data_fraction=1.0")
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["run"] = run_suite(suite, options(tiny_kdef, cache_dir, executor="local-jobs"))
        except BaseException as error:  # surfaced by the assertions below
            outcome["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    output = tmp_path / "runs" / "smoke"
    deadline = time.time() + 400
    first_result = None
    target = None
    while time.time() < deadline and worker.is_alive():
        done = list(output.glob("*/result.json"))
        if done and first_result is None:
            first_result = done[0]
        records = [p for p in output.glob("*/job.json") if not (p.parent / "result.json").is_file()]
        if first_result is not None and records:
            target = records[0]
            break
        time.sleep(0.2)
    assert target is not None, outcome.get("error")
    stamp = first_result.stat().st_mtime_ns
    time.sleep(2)  # into the cell's training
    os.kill(store.read_json(target)["pid"], signal.SIGUSR2)
    worker.join(400)
    assert "error" not in outcome, outcome.get("error")
    run_ = outcome["run"]
    assert [o.status for o in run_.outcomes] == ["complete", "complete"]
    assert first_result.stat().st_mtime_ns == stamp
    jobs = store.read_json(output / "jobs.json")["cells"]
    log = Path(jobs[target.parent.name]["stdout"]).read_text()
    assert "requeued" in log and log.count("fbench: cell ") >= 2


def test_status_shows_finished_failed_and_pending_cells(tmp_path, tiny_kdef, cache_dir, capsys, monkeypatch):
    from fbench.run.context import Progress, prepare
    from fbench.run.executors import JobsIndex
    from fbench.run.status import suite_status

    suite = smoke_suite(tmp_path, "architectures.0.recipe.lr=1e30", "architectures.0.recipe.optimizer=sgd",
                        "seeds=[0,1]", "budgets.smoke.seeds=2")
    opts = options(tiny_kdef, cache_dir, executor="debug")
    prepared = prepare(suite, opts, Progress())
    assert len(prepared.cells) == 4
    run_suite(suite.model_copy(update={"seeds": [0]}), opts)  # two cells: one NaN failure, one complete
    output = Path(suite.output)
    index = JobsIndex(output, "smoke")
    crashed = prepared.cells[-1]
    log = tmp_path / "crash.err"
    log.write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    index.record(crashed.key, cell=crashed.name, job_id="4242_3", executor="slurm", state="failed",
                 stderr=str(log), reason="job 4242_3 failed: RuntimeError: CUDA out of memory")
    index.save()
    rows = {row.key: row for row in suite_status(output, prepared.cells)}
    states = [rows[cell.key].state for cell in prepared.cells]
    assert sorted(states) == ["failed", "failed", "finished", "pending"]
    nan_cell = [r for r in rows.values() if r.state == "failed" and r.key != crashed.key][0]
    assert "learning rate" in nan_cell.reason and nan_cell.job_id.startswith("DEBUG_")
    assert "CUDA out of memory" in rows[crashed.key].log_tail and rows[crashed.key].job_id == "4242_3"
    monkeypatch.setenv("COLUMNS", "250")
    args = ["status", str(SMOKE), "--data", f"kdef={tiny_kdef}", "--set", f"output={output}", "--set",
            "architectures.0.recipe.lr=1e30", "--set", "architectures.0.recipe.optimizer=sgd", "--set", "seeds=[0,1]",
            "--set", "budgets.smoke.seeds=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 pending" in printed and "2 failed" in printed and "1 finished" in printed
    assert "4242_3" in printed and "CUDA out of memory" in printed


def test_slurm_without_sbatch_says_what_to_use(tmp_path, tiny_kdef, cache_dir, monkeypatch):
    from fbench.errors import FbenchError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FbenchError, match="local-jobs"):
        run_suite(smoke_suite(tmp_path), options(tiny_kdef, cache_dir, executor="slurm"))


def test_slurm_submission_file_carries_the_resources(tmp_path, tiny_kdef, cache_dir, fake_sbatch):
    """A fake sbatch records the array job it is given: partition, GPUs, time, array parallelism, setup, requeue."""
    suite = smoke_suite(tmp_path, "resources.partition=gpu", "resources.time_min=90",
                        "resources.setup=[\"module load cuda\"]", "resources.slurm_params={account: proj1}")
    run = run_suite(suite, options(tiny_kdef, cache_dir, executor="slurm", wait=False,
                                   resources={"max_parallel": 5, "gpus_per_cell": 1}))
    assert run.outcomes == [] and run.leaderboards == []
    script = fake_sbatch.read_text()
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--array=0-1%2", "--requeue",
                 "--account=proj1", "--signal=USR2@90", "module load cuda"):
        assert line in script, line
    jobs = store.read_json(tmp_path / "runs" / "smoke" / "jobs.json")["cells"]
    assert sorted(entry["job_id"] for entry in jobs.values()) == ["777_0", "777_1"]
    assert all(entry["executor"] == "slurm" and entry["stderr"].endswith("777_0_0_log.err") or
               entry["stderr"].endswith("777_1_0_log.err") for entry in jobs.values())
