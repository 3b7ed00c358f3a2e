"""Where each cell of a suite stands: finished, failed, running or pending, with its job id and log (``fbench
status``), from the cells' folders and ``jobs.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fbench.run import store
from fbench.run.cells import Cell
from fbench.run.executors import job_alive, read_jobs_index, slurm_states
from fbench.run.jobs import JOB_RECORD, tail


@dataclass
class CellStatus:
    name: str
    key: str
    state: str  # pending | running | finished | failed
    folder: Path
    job_id: str = ""
    executor: str = ""
    log: str = ""
    reason: str = ""
    log_tail: str = ""
    scheduler: str = ""  # SLURM's own state of the job (RUNNING, PENDING, COMPLETED, FAILED, ...), when it has one


def suite_status(output: Path, cells: list[Cell]) -> list[CellStatus]:
    """Where each cell stands: finished or failed (its ``result.json``), running (its job started and is alive),
    or pending (submitted and waiting, or never submitted); job ids and logs from ``jobs.json``."""
    jobs = read_jobs_index(output, cells[0].suite) if cells else {}
    scheduler = slurm_states([str(job["job_id"]) for job in jobs.values()
                              if job.get("executor") == "slurm" and job.get("job_id")])
    rows = []
    for cell in cells:
        folder = Path(output) / cell.suite / cell.key
        job = jobs.get(cell.key, {})
        row = CellStatus(cell.name, cell.key, "pending", folder, str(job.get("job_id", "")), job.get("executor", ""),
                         job.get("stderr", ""), scheduler=scheduler.get(str(job.get("job_id", "")), ""))
        record = store.finished_result(folder)
        if record is not None:
            row.state = "finished" if record["status"] == store.COMPLETE else "failed"
            row.reason = record.get("reason", "")
        elif job:
            started = started_record(folder, row.job_id)
            alive = job_alive(job)
            if job.get("state") == "failed" or alive is False:
                row.state = "failed"
                row.reason = job.get("reason") or "the job ended without writing the cell's result"
            elif row.scheduler in ("PENDING", "REQUEUED", "REQUEUE_HOLD"):
                pass  # queued again (requeued after preemption): pending, although an earlier start left its record
            elif started or alive and job.get("executor") == "local-jobs":
                row.state = "running"
        if row.state == "failed" and row.log:
            row.log_tail = tail(Path(row.log), 12)
        rows.append(row)
    return rows


def started_record(folder: Path, job_id: str) -> bool:
    path = folder / JOB_RECORD
    if not path.is_file() or not job_id:
        return False
    try:
        return str(store.read_json(path).get("job_id", "")) == job_id
    except (OSError, ValueError):
        return False


