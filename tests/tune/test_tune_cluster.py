"""fbench tune on a cluster: workers submitted through the executors of `fbench run` fill one study on a shared
storage; requeued workers resume their share; storages jobs cannot share are refused; local jobs get their own
GPUs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from test_tune import tiny_plugin, tune_options, write_suite  # noqa: F401 (tiny_plugin: a fixture)

from fbench.errors import FbenchError
from fbench.run import store
from fbench.run.executors import GpuSlots, submit_local, visible_gpus
from fbench.suite.load import load_suite
from fbench.tune.study import resolve_storage
from fbench.tune.workers import TuneCluster, TuneJobSpec, TuneWorker, shareable_storage, submit_tune, trial_shares

optuna = pytest.importorskip("optuna")
pytest.importorskip("submitit")

STUDY = "tiny-tiny_tune-val_accuracy"


def journal(tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'study.journal'}"


def load_study(url: str):
    return optuna.load_study(study_name=STUDY, storage=resolve_storage(url)[0])


def by_worker(study) -> dict[int, list]:
    workers: dict[int, list] = {}
    for trial in study.trials:
        workers.setdefault(trial.user_attrs.get("fbench.worker"), []).append(trial)
    return workers


# ----------------------------------------------------------------------------------------------- pieces


def test_trials_are_split_between_the_workers():
    assert trial_shares(7, 3) == [3, 2, 2]
    assert trial_shares(4, 2) == [2, 2]
    assert trial_shares(None, 2) == [None, None]


def test_local_jobs_get_their_own_gpus_round_robin_by_slot():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({}, count=2) == ["0", "1"]
    slots = GpuSlots(["0", "1", "2", "3"], None)  # default: one GPU per job
    assert [slots.acquire() for _ in range(2)] == [(0, ["0"]), (1, ["1"])]
    slots.release(0)
    assert slots.acquire() == (0, ["0"])  # the freed slot, and its GPU, go to the next job
    pairs = GpuSlots(["4", "5", "6", "7"], 2)
    assert [pairs.acquire()[1] for _ in range(3)] == [["4", "5"], ["6", "7"], ["4", "5"]]  # more jobs than groups
    for per_job in (None, 1):
        cpu = GpuSlots([], per_job)
        assert cpu.acquire() == (0, []) and cpu.acquire() == (1, [])  # no GPU: nothing to assign
    with pytest.raises(FbenchError, match="--gpus-per-cell 2: this machine shows 1 GPU"):
        GpuSlots(["0"], 2)


def test_submit_local_sets_cuda_visible_devices_per_job(tmp_path):
    import submitit

    executor = submitit.LocalExecutor(tmp_path / "jobs")
    executor.update_parameters(timeout_min=2)
    index = submit_local(executor, [], ["1"], os.getenv, "CUDA_VISIBLE_DEVICES")
    uuid = submit_local(executor, [], ["GPU-5e1d"], os.getenv, "CUDA_VISIBLE_DEVICES")  # MIG-style ids
    none = submit_local(executor, [], [], os.getenv, "CUDA_VISIBLE_DEVICES")
    assert (index.result(), uuid.result(), none.result()) == ("1", "GPU-5e1d", "")


def test_storages_jobs_cannot_share_are_refused(tmp_path, tiny_kdef, tiny_plugin, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, notes = shareable_storage("sqlite:///optuna.db", "local-jobs")
    assert text == f"sqlite:///{(tmp_path / 'optuna.db').resolve().as_posix()}" and notes == []  # made absolute
    with pytest.raises(FbenchError, match="in-memory"):
        shareable_storage("sqlite:///:memory:", "debug")
    suite = load_suite(write_suite(tmp_path, tiny_plugin))
    options = tune_options(tmp_path, tiny_kdef, storage="sqlite:///optuna.db", trials=4)
    with pytest.raises(FbenchError) as refused:
        submit_tune(suite, options, TuneCluster("slurm", workers=2))
    message = str(refused.value)
    assert "SQLite is unsafe" in message and "NFS" in message
    assert f"--storage journal:{(tmp_path / 'optuna.journal').resolve()}" in message
    assert "postgresql://" in message
    with pytest.raises(FbenchError, match="--trials 1 is fewer than --workers 2"):
        submit_tune(suite, tune_options(tmp_path, tiny_kdef, storage=journal(tmp_path), trials=1),
                    TuneCluster("debug", workers=2))
    with pytest.raises(FbenchError, match="--no-wait needs a scheduler"):
        submit_tune(suite, tune_options(tmp_path, tiny_kdef, storage=journal(tmp_path)),
                    TuneCluster("local-jobs", workers=2, wait=False))


# ----------------------------------------------------------------------------------------------- workers


def test_two_local_job_workers_fill_one_journal_study(tmp_path, tiny_kdef, tiny_plugin, monkeypatch):
    """Two submitit local jobs on one journal file: 4 trials in all, 2 each, every one finished; each job got
    its own (pretended) GPU."""
    monkeypatch.setattr("fbench.tune.workers.visible_gpus", lambda: ["0", "1"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    suite = load_suite(write_suite(tmp_path, tiny_plugin))
    notes: list[str] = []
    result = submit_tune(suite, tune_options(tmp_path, tiny_kdef, storage=journal(tmp_path), trials=4),
                         TuneCluster("local-jobs", workers=2), note=notes.append)
    study = load_study(journal(tmp_path))
    workers = by_worker(study)
    assert sorted(workers) == [0, 1] and [len(workers[0]), len(workers[1])] == [2, 2]
    assert all(t.state.is_finished() for t in study.trials) and sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert len(result.outcomes) == 4 and result.best_path == (tmp_path / "out" / "best.yaml").resolve()
    assert yaml.safe_load(result.best_path.read_text())["trials"]["complete"] >= 1
    jobs = store.read_json(tmp_path / "out" / "jobs.json")
    assert {w["state"] for w in jobs["workers"].values()} == {"finished"}
    assert sorted(w["gpus"] for w in jobs["workers"].values()) == ["0", "1"]
    assert sum("finished: 2 trials" in text for text in notes) == 2


def test_debug_workers_log_child_runs_under_one_parent(tmp_path, tiny_kdef, tiny_plugin, monkeypatch, capsys):
    from mlflow import MlflowClient

    from fbench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "250")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite_path = write_suite(tmp_path, tiny_plugin)
    common = [str(suite_path), "--arch", "tiny_tune", "--data", f"kdef={tiny_kdef}", "--device", "cpu",
              "--storage", "tune.journal", "--no-report"]
    assert main(["tune", *common, "--workers", "2", "--no-tracking"]) == 2  # the local executor has no workers
    assert "needs --executor local-jobs" in capsys.readouterr().err
    assert main(["tune", *common, "--trials", "3", "--executor", "debug", "--workers", "2", "--seed", "0",
                 "--tracking-uri", uri]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "this run added 3 trials" in printed
    study = load_study(f"journal:{tmp_path / 'tune.journal'}")
    assert [len(trials) for _, trials in sorted(by_worker(study).items())] == [2, 1]
    assert (tmp_path / "tune" / STUDY / "best.yaml").is_file()

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny-tune").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["worker"] for r in children) == ["0", "0", "1"]
    assert parents[0].data.params["workers"] == "2" and "trials.complete" in parents[0].data.metrics


def test_requeued_worker_fails_its_interrupted_trial_and_resumes_its_share(tmp_path, tiny_kdef, tiny_plugin):
    """A worker's job stopped mid-trial leaves that trial RUNNING (the journal storage has no heartbeat); the
    requeued job marks it failed and runs only the rest of its share."""
    suite = load_suite(write_suite(tmp_path, tiny_plugin))
    options = tune_options(tmp_path, tiny_kdef, storage=journal(tmp_path), trials=4)
    spec = TuneJobSpec(suite, options, os.getcwd(), "inv1", workers=2)
    assert TuneWorker(spec)(1)["trials"] == 2
    study = load_study(journal(tmp_path))
    interrupted = study.ask()  # worker 0's first job, killed during this trial
    interrupted.set_user_attr("fbench.invocation", "inv1")
    interrupted.set_user_attr("fbench.worker", 0)
    requeued = TuneWorker(spec).checkpoint(0)
    assert isinstance(requeued.function, TuneWorker) and requeued.args == (0,)
    summary = requeued.function(*requeued.args)
    assert summary["trials"] == 1  # its share of 2, less the interrupted one
    study = load_study(journal(tmp_path))
    mine = by_worker(study)[0]
    assert len(study.trials) == 4 and len(mine) == 2
    failed = [t for t in mine if t.number == interrupted.number][0]
    assert failed.state.name == "FAIL" and "requeued" in failed.user_attrs["fail_reason"]
    assert all(t.state.is_finished() for t in study.trials)


def test_slurm_script_for_tuning_workers_carries_the_resources(tmp_path, tiny_kdef, tiny_plugin, fake_sbatch):
    """A fake sbatch records the array job: one task per worker, the resources, requeue on preemption."""
    suite = load_suite(write_suite(tmp_path, tiny_plugin, resources={"partition": "gpu", "time_min": 90,
                                                                     "setup": ["module load cuda"]}))
    notes: list[str] = []
    cluster = TuneCluster("slurm", workers=3, wait=False,
                          resources={"gpus_per_cell": 1, "cpus_per_cell": 4, "time_min": 60,
                                     "slurm_params": {"account": "proj1"}})
    result = submit_tune(suite, tune_options(tmp_path, tiny_kdef, storage=journal(tmp_path), trials=7), cluster,
                         note=notes.append)
    assert result.best_path is None and result.outcomes == []
    script = fake_sbatch.read_text()
    for line in ("--partition=gpu", "--time=60", "--gpus-per-node=1", "--cpus-per-task=4", "--array=0-2%3",
                 "--requeue", "--account=proj1", "--signal=USR2@90", "module load cuda", "--job-name=fbench-tune-out"):
        assert line in script, line
    jobs = store.read_json(tmp_path / "out" / "jobs.json")
    assert sorted(w["job_id"] for w in jobs["workers"].values()) == ["777_0", "777_1", "777_2"]
    assert any("must be on a filesystem every node sees" in text for text in notes)  # tmp_path is under /tmp
    assert any("7 trials in all (3, 2, 2)" in text for text in notes)
