"""fbench against a real one-node SLURM (slurmctld + slurmd on this machine, started by .ci/cluster-up): the smoke
suite as a job array gives the local leaderboard, a requeued cell resumes from its checkpoint, a failed job's log
tail shows in `fbench status`, setup lines run before the cell, and tuning workers fill one journal study."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from cluster_helpers import SMOKE, fbench, finish, start_fbench, tune_args, wait_for

from fbench.run import store
from fbench.run.executors import slurm_states

pytestmark = pytest.mark.cluster

ON_NODE = ("--gpus-per-cell", "0", "--cpus-per-cell", "1", "--time-min", "15")
# Six epochs on all the training images (early stopping cannot end it sooner): a requeue after the first epoch's
# resume checkpoint kills the job (SIGTERM, then SIGKILL KillWait = 5 s later) well before training ends.
LONGER = ("--set", "budgets.longer={max_folds: 1, max_epochs: 6, min_epochs: 6, data_fraction: 1.0, seeds: 1, "
          "max_train_images: 512}", "--budget", "longer", "--only", "lanmsff")


def run_args(folder: Path, kdef: Path, *extra: str) -> list[str]:
    return ["run", str(SMOKE), "--data", f"kdef={kdef}", "--device", "cpu", "--no-report", "--no-tracking",
            "--set", f"output={folder / 'runs'}", "--set", f"reports={folder / 'reports'}", *extra]


def slurm_args(partition: str) -> tuple[str, ...]:
    return ("--executor", "slurm", "--partition", partition, *ON_NODE)


def status(folder: Path, kdef: Path, *extra: str) -> list[dict]:
    args = ["status", str(SMOKE), "--data", f"kdef={kdef}", "--set", f"output={folder / 'runs'}", *extra, "--json"]
    return json.loads(fbench(*args, cwd=folder).stdout)


def squeue_ids() -> set[str]:
    listed = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return set(listed.split())


def predictions(folder: Path) -> dict[str, pd.DataFrame]:
    """Each finished cell's per-sample predictions, by cell key."""
    return {path.parent.name: pd.read_csv(path) for path in sorted((folder / "runs" / "smoke").glob("*/" +
                                                                                            store.PREDICTIONS))}


def same_predictions(first: dict[str, pd.DataFrame], second: dict[str, pd.DataFrame]) -> None:
    assert sorted(first) == sorted(second) and first
    for key in first:
        pd.testing.assert_frame_equal(first[key], second[key])


def test_smoke_suite_as_a_job_array_gives_the_local_leaderboard(tmp_path, tiny_kdef, partition):
    """Submitted with --no-wait, followed by `fbench status` (SLURM's job ids and states), then by `fbench run`
    again, which waits for the live jobs instead of submitting them twice. Each job ran the setup line first.
    The reference, a local run, runs meanwhile beside the jobs."""
    local_smoke = tmp_path / "local"
    local_smoke.mkdir()
    reference = start_fbench(*run_args(local_smoke, tiny_kdef), cwd=local_smoke)
    marker = tmp_path / "setup-ran.txt"
    setup = f'echo "$SLURM_ARRAY_JOB_ID"_"$SLURM_ARRAY_TASK_ID" >> {marker}'
    args = run_args(tmp_path, tiny_kdef, *slurm_args(partition), "--slurm-setup", setup)
    submitted = fbench(*args, "--no-wait", cwd=tmp_path)
    assert "submitting 2 cells as slurm jobs" in submitted.stdout + submitted.stderr
    rows = status(tmp_path, tiny_kdef)
    job_ids = {row["job_id"] for row in rows}
    array = next(iter(job_ids)).split("_")[0]
    assert job_ids == {f"{array}_0", f"{array}_1"} and {row["executor"] for row in rows} == {"slurm"}
    live = {row["scheduler"] for row in rows}
    assert live <= {"PENDING", "RUNNING", "COMPLETING", "COMPLETED"} and live != {""}
    if live != {"COMPLETED"}:
        assert job_ids & squeue_ids()  # squeue lists the same jobs

    followed = fbench(*args, cwd=tmp_path, timeout=400)
    said = followed.stdout + followed.stderr
    assert "submitting" not in said  # it followed the queued jobs (or found them finished)
    jobs = tmp_path / "runs" / "smoke" / "jobs"
    assert [path.name for path in jobs.glob("*_submission.sh")] == [f"{array}_submission.sh"]  # one array only
    rows = status(tmp_path, tiny_kdef)
    assert {(row["state"], row["scheduler"]) for row in rows} == {("finished", "COMPLETED")}
    assert {row["job_id"] for row in rows} == job_ids
    assert sorted(marker.read_text().split()) == sorted(job_ids)
    finish(reference)
    same_predictions(predictions(local_smoke), predictions(tmp_path))
    board = ["leaderboard", str(SMOKE), "--data", f"kdef={tiny_kdef}", "--format", "csv"]
    assert (fbench(*board, "--set", f"output={tmp_path / 'runs'}", cwd=tmp_path).stdout
            == fbench(*board, "--set", f"output={local_smoke / 'runs'}", cwd=local_smoke).stdout)


def test_failed_setup_line_shows_its_log_tail_in_status(tmp_path, tiny_kdef, partition):
    marker = tmp_path / "marker.txt"
    args = run_args(tmp_path, tiny_kdef, *slurm_args(partition), "--only", "lanmsff",
                    "--slurm-setup", f"echo setup ran > {marker}",
                    "--slurm-setup", "echo 'module: cuda/99.9 not found' >&2; exit 1")
    failed = fbench(*args, cwd=tmp_path, timeout=200)  # a failed cell is reported, not an error of the command
    assert "SLURM ended it as FAILED" in failed.stdout + failed.stderr
    assert marker.read_text() == "setup ran\n"  # the setup lines ran, in order, before the cell (which never ran)
    [row] = status(tmp_path, tiny_kdef, "--only", "lanmsff")
    assert row["state"] == "failed" and row["scheduler"] == "FAILED"
    assert "SLURM ended it as FAILED" in row["reason"] and "module: cuda/99.9 not found" in row["reason"]
    assert "module: cuda/99.9 not found" in row["log_tail"]
    table = fbench("status", str(SMOKE), "--data", f"kdef={tiny_kdef}", "--set", f"output={tmp_path / 'runs'}",
                   "--only", "lanmsff", cwd=tmp_path).stdout
    assert "last lines of" in table and "module: cuda/99.9 not found" in table and "FAILED" in table


def test_requeued_cell_resumes_from_its_checkpoint_with_the_uninterrupted_predictions(tmp_path, tiny_kdef,
                                                                                        partition):
    """`scontrol requeue` of the running cell after its first epoch: SLURM kills the job and queues it again
    under the same id; the new start resumes from the resume checkpoint and ends with the predictions of an
    uninterrupted run (CPU, same seed)."""
    reference = tmp_path / "reference"
    reference.mkdir()
    uninterrupted = start_fbench(*run_args(reference, tiny_kdef, *LONGER), cwd=reference)  # beside the job

    work = tmp_path / "requeued"
    work.mkdir()
    fbench(*run_args(work, tiny_kdef, *LONGER, *slurm_args(partition)), "--no-wait", cwd=work)
    [row] = status(work, tiny_kdef, *LONGER)
    job_id, cell = row["job_id"], Path(row["folder"])
    wait_for(lambda: (cell / store.RESUME).is_file(), 180, f"the first epoch's checkpoint in {cell}", poll=0.2)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    # SLURM kills the job (COMPLETING), queues it again (PENDING) and holds it for two minutes (BeginTime): start
    # it now
    wait_for(lambda: slurm_states([job_id]).get(job_id) == "PENDING", 60, f"job {job_id} queued again", poll=0.2)
    [row] = status(work, tiny_kdef, *LONGER)  # while SLURM holds it: once started, it may finish in seconds
    assert row["scheduler"] == "PENDING" and row["state"] == "pending"
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    wait_for(lambda: store.finished_result(cell) is not None, 240, "the requeued cell to finish", poll=1.0)
    [row] = status(work, tiny_kdef, *LONGER)
    assert row["job_id"] == job_id and row["state"] == "finished"
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts
    log = Path(store.read_json(work / "runs" / "smoke" / "jobs.json")["cells"][cell.name]["stdout"]).read_text()
    assert "DUE TO JOB REQUEUE" in Path(row["log"]).read_text()  # SLURM killed the first start
    assert "resuming from epoch" in log and "complete (reused)" not in log, log[-3000:]
    assert not (cell / store.RESUME).exists()
    finish(uninterrupted)
    same_predictions(predictions(reference), predictions(work))


def test_tune_workers_on_slurm_fill_one_journal_study(tmp_path, tiny_kdef, partition):
    optuna = pytest.importorskip("optuna")
    journal = tmp_path / "study.journal"
    fbench(*tune_args(tmp_path, tiny_kdef, f"journal:{journal}", 4, "--workers", "2", *slurm_args(partition)),
           cwd=tmp_path, timeout=300)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    [summary] = optuna.get_all_study_summaries(JournalStorage(JournalFileBackend(str(journal))))
    study = optuna.load_study(study_name=summary.study_name,
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    workers = sorted(t.user_attrs.get("fbench.worker") for t in study.trials)
    assert workers == [0, 0, 1, 1]
    jobs = store.read_json(tmp_path / "out" / "jobs.json")
    ids = [w["job_id"] for w in jobs["workers"].values()]
    array = ids[0].split("_")[0]
    assert jobs["executor"] == "slurm" and sorted(ids) == [f"{array}_0", f"{array}_1"]
    assert {w["state"] for w in jobs["workers"].values()} == {"finished"}
