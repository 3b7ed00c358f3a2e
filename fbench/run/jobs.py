"""One cell as a job: the callable a cluster executor submits, and the torchrun launch of a multi-process cell.

:class:`CellRunner` is what every executor is handed to run a cell: in this process, or under torchrun when the
cell asks for several processes. A job gets no live objects from the process that submitted it: :class:`JobSpec`
carries the validated suite, the run options and a picklable logger for the cell's MLflow child run, and
:class:`CellJob` rebuilds the run context inside the job (dataset table, splits, decoded-image cache) before it
runs the cell. The cell writes its own hashed folder as it does
locally, so resume, rescoring and the leaderboard read the same files wherever the cell ran.

``CellJob`` has a ``checkpoint`` method, so submitit requeues it when the job is preempted or reaches its time
limit. The requeued job runs the cell again: a finished cell is reused, an unfinished one continues from its
last finished epoch (the cell's resume checkpoint).

A job whose cell another live process is running (it holds the cell's lock: a second ``fbench run`` of the suite)
waits for it, then reuses its result, logged to MLflow by the process that ran it.

A cell that asks for several processes (``resources.gpus_per_cell`` > 1, or ``processes_per_cell``) runs as
``python -m torch.distributed.run --standalone --nproc-per-node N -m fbench.run.jobs SPEC KEY``: every rank
rebuilds the context, rank 0 decodes the cache first, and only rank 0 writes the cell's folder.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbench.data.files import write_atomic
from fbench.engine import distributed
from fbench.engine.devices import resolve_device
from fbench.errors import FbenchError
from fbench.registry import load_plugins
from fbench.run import store
from fbench.run.cell import CellBusy, CellOutcome, claimed, run_cell
from fbench.run.cells import Cell
from fbench.run.context import Progress, RunContext, RunOptions, prepare
from fbench.suite.schema import Suite

JOB_RECORD = "job.json"  # in the cell's folder: which job ran it, where and when it started
LOG_TAIL_LINES = 30


@dataclass
class JobSpec:
    """Everything a job needs to rebuild a suite's run context: picklable, no live objects."""

    suite: Suite
    options: RunOptions
    cwd: str  # relative paths (output, data, the MLflow database) resolve against the submitting folder
    log_cell: Callable[[CellOutcome], bool] | None = None  # logs the cell's MLflow child run from inside the job
    executor: str = "local"

    @classmethod
    def from_runner(cls, runner: CellRunner, executor: str) -> JobSpec:
        return cls(runner.suite, runner.options, os.getcwd(), runner.job_logger, executor)


@dataclass
class CellRunner:
    """An executor's ``run_one``: runs a cell in this process (under torchrun when it asks for several
    processes). Cluster executors do not call it; they rebuild the context inside each job from ``suite`` and
    ``options``, and log through ``job_logger``."""

    context: RunContext
    suite: Suite
    options: RunOptions
    job_logger: Callable[[CellOutcome], bool] | None = None
    busy: dict[str, str] = field(default_factory=dict)  # cell key -> who ran it, for cells another process had

    def __call__(self, cell: Cell) -> CellOutcome:
        """The cell's outcome; :class:`~fbench.run.cell.CellBusy` (said once) when another live process runs it,
        and a note when a cell another process ran is reused."""
        try:
            if processes_per_cell(self.suite, self.options) > 1:
                outcome = run_cell_with_torchrun(cell, self)
            else:
                outcome = run_cell(cell, self.context)
        except CellBusy as busy:
            if cell.key not in self.busy:
                self.context.progress.note(f"{busy}: coming back to it when the other cells are done")
            self.busy[cell.key] = busy.holder.describe()
            raise
        if cell.key in self.busy and outcome.reused:
            self.context.progress.note(f"cell {cell.name} ({cell.key}) was run by another process, "
                                       f"{self.busy[cell.key]}: its result is reused here (and logged to MLflow "
                                       "by that process)")
        return outcome


def processes_per_cell(suite: Suite, options: RunOptions) -> int:
    """How many processes each cell runs as: ``processes_per_cell``, else ``gpus_per_cell`` when above 1, else 1
    (the command line's values over the suite's)."""
    merged = {**suite.resources.model_dump(), **{k: v for k, v in options.resources.items() if v is not None}}
    if merged.get("processes_per_cell"):
        return int(merged["processes_per_cell"])
    gpus = merged.get("gpus_per_cell") or 0
    return int(gpus) if gpus > 1 else 1


# --------------------------------------------------------------------------------------------------- context


def build_context(spec: JobSpec, quiet: bool = False, output: Path | None = None) -> tuple[RunContext, list[Cell]]:
    """The run context and the suite's cells, rebuilt from ``spec`` (jobs log through ``spec.log_cell``).
    ``output`` replaces the suite's output folder (torchrun ranks other than 0)."""
    os.chdir(spec.cwd)
    load_plugins([*spec.options.plugins, *spec.suite.plugins])
    progress = Progress() if quiet else Progress(note=lambda text: print(f"fbench: {text}", flush=True))
    prepared = prepare(spec.suite, spec.options, progress, planning="stored")  # the submitting run planned
    device = resolve_device(spec.options.device or spec.suite.device)
    context = RunContext(spec.suite, prepared.table, Path(output or spec.suite.output), device, prepared.splits,
                         spec.options.cache_dir, spec.options.retry_failed, progress)
    return context, prepared.cells


def find_cell(cells: list[Cell], key: str, suite: Suite) -> Cell:
    for cell in cells:
        if cell.key == key:
            return cell
    raise FbenchError(f"cell {key} is not in suite {suite.name!r} as this job rebuilt it (the dataset or fbench "
                      f"changed since the job was submitted?); run `fbench run {suite.source or 'SUITE'}` again")


# --------------------------------------------------------------------------------------------------- the job


def job_environment() -> dict[str, str]:
    """The submitit job this process runs in (id, executor), or empty outside one."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return {"job_id": str(env.job_id), "executor": type(env).__name__.replace("JobEnvironment", "").lower()}
    except Exception:  # not inside a submitit job (a plain process, the debug executor before it starts)
        return {}


class CellJob:
    """The callable submitted per cell: ``CellJob(spec)(cell_key)`` runs the cell and returns a small summary.

    It implements submitit's ``checkpoint`` protocol (as ``submitit.helpers.Checkpointable`` does), so a preempted
    or timed-out job is requeued with the same arguments."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def __call__(self, key: str) -> dict[str, Any]:
        context, cells = build_context(self.spec)
        cell = find_cell(cells, key, self.spec.suite)
        folder = context.folder(cell)
        record = {**job_environment(), "host": platform.node(), "pid": os.getpid(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cell": cell.name, "key": key}
        if store.finished_result(folder) is None:
            store.write_json(folder / JOB_RECORD, record)
        print(f"fbench: cell {cell.name} ({key}) in {folder} on {record['host']}", flush=True)
        processes = processes_per_cell(self.spec.suite, self.spec.options)
        if processes > 1:
            outcome = _torchrun_cell(cell, self.spec, context, processes, wait=True)
        else:
            outcome = run_cell(cell, context, wait=True)
        logged = False
        if not outcome.reused and self.spec.log_cell is not None:
            logged = self.spec.log_cell(outcome)
        print(f"fbench: cell {cell.name}: {outcome.status}{' (reused)' if outcome.reused else ''} "
              f"in {outcome.seconds:.0f} s", flush=True)
        return {"key": key, "status": outcome.status, "reason": outcome.reason, "seconds": outcome.seconds,
                "reused": outcome.reused, "logged": logged}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same cell (called by submitit on preemption or at the time limit)."""
        from submitit.helpers import DelayedSubmission

        print("fbench: job preempted or out of time: requeued; the cell continues from its last finished epoch",
              flush=True)
        return DelayedSubmission(type(self)(self.spec), *args, **kwargs)


# --------------------------------------------------------------------------------------------------- torchrun


def torchrun_command(processes: int, spec_path: Path, key: str) -> list[str]:
    """The command that runs cell ``key`` as ``processes`` ranks on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "fbench.run.jobs", str(spec_path), key]


def run_cell_with_torchrun(cell: Cell, runner: CellRunner) -> CellOutcome:
    """A multi-process cell run from the local executor: torchrun on this machine; MLflow logging stays with the
    caller."""
    spec = JobSpec(runner.suite, runner.options, os.getcwd(), None, "local")
    return _torchrun_cell(cell, spec, runner.context, processes_per_cell(runner.suite, runner.options))


def _torchrun_cell(cell: Cell, spec: JobSpec, context: RunContext, processes: int, wait: bool = False
                   ) -> CellOutcome:
    """Run the cell as ``processes`` torchrun ranks while this process holds the cell's lock (the ranks take no
    lock); another live holder raises CellBusy, or with ``wait`` is waited for."""
    folder = context.folder(cell)
    with claimed(cell, folder, context.retry_failed, context.progress.note, wait) as reused:
        return reused if reused is not None else _torchrun_ranks(cell, spec, context, processes, folder)


def _torchrun_ranks(cell: Cell, spec: JobSpec, context: RunContext, processes: int, folder: Path) -> CellOutcome:
    import cloudpickle

    # the cell runs: a result there (a failure retried, or a damaged record) must not stop the ranks' resume check
    (folder / store.RESULT).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / ".torchrun-spec.pkl"
    write_atomic(spec_path, cloudpickle.dumps(spec))
    log_path = folder / "torchrun.log"
    started = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or processes) // processes)))
    with log_path.open("ab") as log:
        completed = subprocess.run(torchrun_command(processes, spec_path, cell.key), env=env, cwd=spec.cwd,
                                   stdout=log, stderr=subprocess.STDOUT, check=False)
    spec_path.unlink(missing_ok=True)
    record = store.finished_result(folder)
    if completed.returncode != 0 or record is None:
        raise FbenchError(f"cell {cell.name}: torchrun with {processes} processes exited with status "
                          f"{completed.returncode}; last lines of {log_path}:\n{tail(log_path)}")
    return CellOutcome(cell, folder, record["status"], reused=False, reason=record.get("reason", ""),
                       seconds=time.perf_counter() - started)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def rank_main(spec_path: Path, key: str) -> int:
    """One torchrun rank of cell ``key``: join the group, rebuild the context, run the cell; rank 0 writes."""
    import cloudpickle

    spec: JobSpec = cloudpickle.loads(Path(spec_path).read_bytes())
    device = spec.options.device or spec.suite.device
    plan = distributed.init_from_env("cpu" if device == "cpu" else None)
    try:
        if plan.device.type == "cuda":
            spec.options.device = str(plan.device)
        scratch = None if plan.is_main else Path(tempfile.mkdtemp(prefix=f"fbench-rank{plan.rank}-"))
        context, cells = build_context(spec, quiet=not plan.is_main, output=scratch)
        cell = find_cell(cells, key, spec.suite)
        real_folder = Path(spec.suite.output) / cell.suite / cell.key
        if store.finished_result(real_folder) is not None:
            return 0  # another attempt finished it (every rank sees the same file)
        if plan.is_main:  # decode the cache once, then the other ranks read it
            context.cache(cell.input_size)
        plan.barrier()
        run_cell(cell, context, lock=False)  # the torchrun launcher holds the cell's lock
        plan.barrier()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: torchrun --nproc-per-node N -m fbench.run.jobs SPEC.pkl CELL_KEY", file=sys.stderr)
        sys.exit(2)
    sys.exit(rank_main(Path(sys.argv[1]), sys.argv[2]))
