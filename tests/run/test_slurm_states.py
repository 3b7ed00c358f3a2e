"""SLURM job states without accounting: `scontrol show job` first, `sacct` for jobs the controller forgot; a job
that ended without a result is seen as ended (not waited for forever) and its failure names SLURM's state and its
log's last line. Fake `scontrol` and `sacct` scripts stand in for the scheduler (tests/cluster/ meets a real one)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from fbench.run.executors import array_tasks, ended_jobs, job_result, slurm_states

SCONTROL = """#!/bin/sh
[ "$4" = 40 ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
echo "JobId=41 ArrayJobId=40 ArrayTaskId=0 JobName=fbench-smoke JobState=COMPLETED Reason=None"
echo "JobId=42 ArrayJobId=40 ArrayTaskId=1 JobName=fbench-smoke JobState=FAILED Reason=NonZeroExitCode"
echo "JobId=40 ArrayJobId=40 ArrayTaskId=2-4,7%2 JobName=fbench-smoke JobState=PENDING Reason=JobArrayTaskLimit"
"""
SACCT = """#!/bin/sh
echo "9_0|CANCELLED by 0"
echo "9_0.batch|CANCELLED"
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in (("scontrol", SCONTROL), ("sacct", SACCT)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_array_task_ranges():
    assert array_tasks("3") == [3]
    assert array_tasks("2-4,7%2") == [2, 3, 4, 7]
    assert array_tasks("N/A") == []


def test_states_from_scontrol_then_sacct(fake_slurm):
    states = slurm_states(["40_0", "40_1", "40_3", "40_7", "9_0", "5_0"])
    assert states == {"40_0": "COMPLETED", "40_1": "FAILED", "40_3": "PENDING", "40_7": "PENDING",
                      "9_0": "CANCELLED"}  # 5_0: known to neither


def test_a_job_that_ended_without_a_result_is_ended_and_says_why(fake_slurm, tmp_path):
    def job(job_id: str, result: bool) -> SimpleNamespace:
        pickle = tmp_path / f"{job_id}_result.pkl"
        if result:
            pickle.write_bytes(b"")
        log = tmp_path / f"{job_id}.err"
        log.write_text("module: cuda/99.9 not found\n")
        return SimpleNamespace(job_id=job_id, paths=SimpleNamespace(result_pickle=pickle, stderr=log, stdout=log))

    finished, failed, queued = job("40_0", True), job("40_1", False), job("40_2", False)
    assert ended_jobs("slurm", [finished, failed, queued]) == {"40_0", "40_1"}
    with pytest.raises(RuntimeError, match="SLURM ended it as FAILED before it wrote a result; its log ends: "
                                           "module: cuda/99.9 not found"):
        job_result("slurm", failed)
