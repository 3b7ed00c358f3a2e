"""Executors: how a suite's cells run. ``local`` runs them in turn in this process; ``slurm``, ``local-jobs`` and
``debug`` submit them as jobs through submitit.

Several ``fbench run`` of one suite (in one folder, or on nodes sharing it) split its cells: a cell runs only
under its lock (:class:`fbench.run.store.CellLock`). The local executor skips a cell another live process holds
and comes back to it when its own cells are done, waiting for it to finish and reusing its result; a job whose
cell is held waits for it the same way (:mod:`fbench.run.jobs`).

``fbench run SUITE --executor slurm`` submits every unfinished cell as one task of a SLURM job array
(``--array=0-N%max_parallel``), with the partition, GPUs, CPUs, memory, time limit and setup lines of the
suite's ``resources:`` block or the command line. ``local-jobs`` runs each cell as a local process through
submitit's ``LocalExecutor`` (at most ``max_parallel`` at once; on a machine with GPUs each job gets its own
``gpus_per_cell`` of them, default one, through CUDA_VISIBLE_DEVICES: round-robin by job slot), and ``debug``
runs them in this process through its ``DebugExecutor``: the same job code in both, so the tests exercise what
a cluster runs.

Each job rebuilds the suite's context and runs its cell into the cell's hashed folder on the shared filesystem
(``fbench.run.jobs``). This process waits for the jobs (unless ``--no-wait``), then builds the leaderboard and
the report from the folders, exactly as a local run does. Jobs are requeued when preempted or out of time.
SLURM job states come from ``scontrol show job``, then ``sacct`` (:func:`slurm_states`), so that a cluster without
accounting (no slurmdbd) works too: a job that ended without a result is seen as ended, not waited for.

``<output>/<suite>/jobs.json`` records the latest job of each cell (id, executor, log files, state); submitit's
own files (pickles and logs) live in ``<output>/<suite>/jobs/``. ``fbench status`` reads both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from fbench.errors import FbenchError
from fbench.registry import Registry
from fbench.run import store
from fbench.run.cell import BUSY_POLL_SECONDS, CellBusy, CellOutcome, reused_outcome
from fbench.run.cells import Cell
from fbench.run.jobs import CellJob, CellRunner, JobSpec, tail
from fbench.suite.schema import control_character_problem

OnDone = Callable[[CellOutcome], None]

JOBS_INDEX = "jobs.json"
JOBS_FOLDER = "jobs"
DEFAULTS: dict[str, dict[str, Any]] = {
    "slurm": {"gpus_per_cell": 1, "cpus_per_cell": 8, "time_min": 240, "max_parallel": 32},
    "local-jobs": {"time_min": 24 * 60, "max_parallel": 1},  # GPUs: one per job (its own) when there are any
    "debug": {"gpus_per_cell": 0, "time_min": 24 * 60, "max_parallel": 1},
}
POLL_SECONDS = {"slurm": 15.0, "local-jobs": 0.5, "debug": 0.0}


@dataclass
class Resources:
    """What each cell's job asks for, after the command line's overrides of the suite's ``resources:``."""

    partition: str | None = None
    gpus_per_cell: int | None = None
    processes_per_cell: int | None = None
    cpus_per_cell: int | None = None
    mem_gb: float | None = None
    time_min: int = 240
    max_parallel: int = 1
    setup: list[str] = field(default_factory=list)
    slurm_params: dict[str, Any] = field(default_factory=dict)


def resolve_resources(kind: str, suite_resources: Any, overrides: dict[str, Any]) -> Resources:
    """The suite's resources, the executor's defaults where neither gives a value, the command line over both."""
    merged = {**DEFAULTS[kind]}
    for source in (suite_resources.model_dump(), overrides):
        for key, value in source.items():
            if value is None or (key in ("setup", "slurm_params") and not value):
                continue
            if key in ("setup",):
                merged[key] = [*merged.get(key, []), *value] if source is overrides else list(value)
            elif key == "slurm_params":
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    unknown = set(merged) - set(Resources.__dataclass_fields__)
    if unknown:
        raise FbenchError(f"unknown resource(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(Resources.__dataclass_fields__)}")
    _refuse_multiline(merged)
    return Resources(**merged)


def _refuse_multiline(resources: dict[str, Any]) -> None:
    """A newline in a SLURM value would add a line (an ``#SBATCH`` option, a command) to the job script."""
    texts: list[tuple[str, Any]] = [("resources.partition (--partition)", resources.get("partition"))]
    texts += [("resources.setup (--slurm-setup)", line) for line in resources.get("setup", [])]
    for key, value in resources.get("slurm_params", {}).items():
        texts += [("resources.slurm_params (--slurm-param)", text) for text in (str(key), value)]
    for what, text in texts:
        problem = control_character_problem(text, what) if isinstance(text, str) else None
        if problem:
            raise FbenchError(f"{problem} (got {text!r})")


# --------------------------------------------------------------------------------------------------- jobs index


def jobs_index_path(output: Path, suite: str) -> Path:
    return Path(output) / suite / JOBS_INDEX


def read_jobs_index(output: Path, suite: str) -> dict[str, dict[str, Any]]:
    """Each cell's latest job record, by cell key ({} before any job was submitted)."""
    path = jobs_index_path(output, suite)
    if not path.is_file():
        return {}
    try:
        return dict(store.read_json(path).get("cells", {}))
    except (OSError, ValueError, AttributeError):
        return {}


class JobsIndex:
    """``jobs.json``, written atomically by the submitting process only (jobs write their own cell folders)."""

    def __init__(self, output: Path, suite: str) -> None:
        self.path = jobs_index_path(output, suite)
        self.cells = read_jobs_index(output, suite)

    def record(self, key: str, **changes: Any) -> None:
        entry = self.cells.setdefault(key, {})
        if "job_id" in changes and entry.get("job_id") not in (None, changes["job_id"]):
            previous = entry.get("previous", [])
            entry["previous"] = [*previous, {k: entry.get(k) for k in ("job_id", "state", "executor")}][-10:]
            for stale in ("ended", "reason"):
                entry.pop(stale, None)
        entry.update(changes)

    def save(self) -> None:
        store.write_json(self.path, {"format": 1, "cells": self.cells})


# --------------------------------------------------------------------------------------------------- executor


class Executor(Protocol):
    """Runs cells. The local executor runs them in turn; cluster executors submit them as jobs."""

    def run(self, cells: list[Cell], run_one: Callable[[Cell], CellOutcome], on_done: OnDone
            ) -> list[CellOutcome]: ...


class LocalExecutor:
    """Runs the cells one after another in this process. A cell another live process is running (``run_one``
    raises :class:`~fbench.run.cell.CellBusy`) is skipped, then visited again every ``poll`` seconds once the
    other cells are done, until it is finished (and reused) or free (and run here)."""

    def __init__(self, poll: float = BUSY_POLL_SECONDS) -> None:
        self.poll = poll

    def run(self, cells: list[Cell], run_one: Callable[[Cell], CellOutcome], on_done: OnDone
            ) -> list[CellOutcome]:
        outcomes: dict[str, CellOutcome] = {}
        waiting = list(cells)
        while waiting:
            busy = []
            for cell in waiting:
                try:
                    outcome = run_one(cell)
                except CellBusy:
                    busy.append(cell)
                    continue
                on_done(outcome)
                outcomes[cell.key] = outcome
            if busy and len(busy) == len(waiting):
                time.sleep(self.poll)  # only cells other processes hold are left: wait for them
            waiting = busy
        return [outcomes[cell.key] for cell in cells]


class SubmititExecutor:
    """An fbench executor that submits cells as submitit jobs: ``slurm``, ``local-jobs`` or ``debug``."""

    def __init__(self, kind: str) -> None:
        if kind not in DEFAULTS:
            raise ValueError(f"unknown submitit executor kind {kind!r}")
        self.kind = kind

    def run(self, cells: list[Cell], run_one: Callable[[Cell], CellOutcome], on_done: OnDone
            ) -> list[CellOutcome]:
        if not isinstance(run_one, CellRunner):
            raise FbenchError(f"the {self.kind} executor needs the suite to rebuild each cell inside its job; call "
                              f"it through fbench.run_suite")
        context, options = run_one.context, run_one.options
        resources = resolve_resources(self.kind, run_one.suite.resources, options.resources)
        if not options.wait and self.kind != "slurm":
            raise FbenchError(f"--no-wait needs a scheduler that outlives this process; with --executor {self.kind} "
                              f"this process runs the jobs: use --executor slurm, or leave out --no-wait")
        outcomes: list[CellOutcome] = []
        todo = []
        for cell in cells:
            outcome = reused_outcome(cell, context.folder(cell), options.retry_failed, context.progress.note)
            if outcome is not None:
                on_done(outcome)
                outcomes.append(outcome)
            else:
                todo.append(cell)
        if not todo:
            return outcomes
        suite_name = todo[0].suite
        index = JobsIndex(context.output, suite_name)
        folder = (context.output / suite_name / JOBS_FOLDER).resolve()
        executor = make_executor(self.kind, folder, resources, f"fbench-{suite_name}")
        job_callable = CellJob(JobSpec.from_runner(run_one, self.kind))
        note = context.progress.note
        runs = _JobRuns(self, executor, job_callable, index, context, on_done, resources)
        if self.kind == "slurm":  # a cell whose job still runs (submitted by an earlier `fbench run`) is followed
            todo = [cell for cell in todo if not runs.attach(cell, folder)]
            if runs.live:
                note(f"following {len(runs.live)} cells whose SLURM jobs are still queued or running: "
                     + ", ".join(str(job.job_id) for _, job in runs.live.values()))
        if todo:
            note(f"submitting {len(todo)} cells as {self.kind} jobs (at most {resources.max_parallel} at once); "
                 f"logs in {folder}; follow with `fbench status {run_one.suite.source or 'SUITE'}`")
        try:
            if self.kind == "local-jobs":
                outcomes += runs.windowed(todo, resources.max_parallel)
            else:
                runs.submit_all(todo)
                if not options.wait:
                    note(f"submitted {len(todo)} jobs and not waiting (--no-wait): `fbench status` shows their "
                         f"progress, `fbench leaderboard` ranks the finished cells, and running `fbench run` "
                         f"again submits only the cells that are neither finished nor running")
                    return outcomes
                outcomes += runs.wait_all()
        except KeyboardInterrupt:
            runs.interrupted()
            raise
        finally:
            index.save()
        order = {cell.key: i for i, cell in enumerate(cells)}
        return sorted(outcomes, key=lambda o: order[o.cell.key])

# --------------------------------------------------------------------------------------------------- submitit


def make_executor(kind: str, folder: Path, resources: Resources, name: str) -> Any:
    """The submitit executor of ``kind`` with ``resources``; jobs named ``name`` (SLURM). A ``local-jobs``
    executor gets its GPUs per job from :class:`GpuSlots` (see :func:`submit_local`)."""
    try:
        import submitit
    except ImportError:
        raise FbenchError(f"--executor {kind} needs submitit: pip install submitit") from None
    if kind == "debug":
        return submitit.DebugExecutor(folder)
    if kind == "local-jobs":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=resources.time_min, gpus_per_node=0, setup=list(resources.setup))
        return executor
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise FbenchError("--executor slurm needs SLURM's sbatch and srun on PATH (not found here); run from a "
                          "cluster login node, or use --executor local-jobs to run jobs on this machine")
    slurm = submitit.AutoExecutor(folder, cluster="slurm")
    extra = {"requeue": True, **resources.slurm_params}
    extra = {key: value for key, value in extra.items() if value is not False}
    parameters: dict[str, Any] = {
        "name": name, "timeout_min": resources.time_min, "nodes": 1, "tasks_per_node": 1,
        "gpus_per_node": resources.gpus_per_cell, "slurm_array_parallelism": resources.max_parallel,
        "slurm_setup": list(resources.setup), "slurm_additional_parameters": extra,
    }
    if resources.partition:
        parameters["slurm_partition"] = resources.partition
    if resources.cpus_per_cell:
        parameters["cpus_per_task"] = resources.cpus_per_cell
    if resources.mem_gb:
        parameters["mem_gb"] = resources.mem_gb
    try:
        slurm.update_parameters(**parameters)
    except ValueError as error:
        raise FbenchError(f"SLURM parameters refused: {error}; fix resources.slurm_params in the suite or "
                          f"--slurm-param") from None
    return slurm


def visible_gpus(environ: dict[str, str] | None = None, count: int | None = None) -> list[str]:
    """The GPUs this process may hand out, as CUDA_VISIBLE_DEVICES entries: the entries of that variable when it
    is set (indices or UUIDs), else ``0..count-1`` (``count``: torch's device count)."""
    environ = dict(os.environ) if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [part.strip() for part in listed.split(",") if part.strip()]
    if count is None:
        count = torch.cuda.device_count()
    return [str(index) for index in range(count)]


class GpuSlots:
    """GPUs for local jobs: each running job holds a slot (the lowest free one) and gets the GPU group
    ``slot % groups``, where the visible GPUs are cut into groups of ``per_job`` (default 1). More slots than
    groups share GPUs, round-robin. On a machine without GPUs (or with ``per_job`` 0) a job gets none, whatever
    ``per_job`` says, so a suite written for a GPU cluster still runs on a CPU-only machine."""

    def __init__(self, gpus: list[str], per_job: int | None) -> None:
        per_job = 0 if not gpus else 1 if per_job is None else per_job
        if per_job > len(gpus):
            raise FbenchError(f"--gpus-per-cell {per_job}: this machine shows {len(gpus)} GPU(s) "
                              f"({', '.join(gpus) or 'none'}); ask for at most {len(gpus)}, or set "
                              f"CUDA_VISIBLE_DEVICES")
        self.per_job = per_job
        self.groups = [gpus[i:i + per_job] for i in range(0, len(gpus) - per_job + 1, per_job)] if per_job else []
        self.taken: set[int] = set()

    def acquire(self) -> tuple[int, list[str]]:
        """``(slot, GPUs)`` for the next job; give the slot back with :meth:`release` when the job ends."""
        slot = next(i for i in range(len(self.taken) + 1) if i not in self.taken)
        self.taken.add(slot)
        return slot, list(self.groups[slot % len(self.groups)]) if self.groups else []

    def release(self, slot: int) -> None:
        self.taken.discard(slot)


def submit_local(executor: Any, setup: list[str], gpus: list[str], function: Any, *args: Any) -> Any:
    """Submit one job to a ``LocalExecutor`` with ``gpus`` as its CUDA_VISIBLE_DEVICES. submitit sets that
    variable from ``visible_gpus`` (integers only); UUIDs (MIG) are exported by a setup line instead."""
    if all(gpu.isdigit() for gpu in gpus):
        executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=[int(gpu) for gpu in gpus],
                                   setup=list(setup))
    else:
        executor.update_parameters(gpus_per_node=0, visible_gpus=(),
                                   setup=[*setup, f"export CUDA_VISIBLE_DEVICES={','.join(gpus)}"])
    return executor.submit(function, *args)


class _JobRuns:
    """Submits cells, follows their jobs and turns finished jobs into cell outcomes."""

    def __init__(self, owner: SubmititExecutor, executor: Any, job_callable: CellJob, index: JobsIndex,
                 context: Any, on_done: Callable[[Any], None], resources: Resources) -> None:
        self.kind = owner.kind
        self.executor = executor
        self.job_callable = job_callable
        self.index = index
        self.context = context
        self.on_done = on_done
        self.live: dict[str, tuple[Any, Any]] = {}  # cell key -> (cell, job)
        self.resources = resources
        self.slots = GpuSlots(visible_gpus(), resources.gpus_per_cell) if self.kind == "local-jobs" else None
        self.slot_of: dict[str, int] = {}

    def attach(self, cell: Any, folder: Path) -> bool:
        """Follow the cell's job from an earlier submission if it is still queued or running."""
        entry = self.index.cells.get(cell.key)
        if not entry or job_alive(entry) is not True:
            return False
        import submitit

        self.live[cell.key] = (cell, submitit.SlurmJob(folder, str(entry["job_id"])))
        return True

    def submit_all(self, cells: list[Any]) -> None:
        if not cells:
            return
        jobs = self.executor.map_array(self.job_callable, [cell.key for cell in cells])  # one job array
        for cell, job in zip(cells, jobs):
            self._submitted(cell, job)
        self.index.save()

    def _submit_one(self, cell: Any) -> None:
        if self.slots is None:
            job = self.executor.submit(self.job_callable, cell.key)
        else:
            slot, gpus = self.slots.acquire()
            self.slot_of[cell.key] = slot
            job = submit_local(self.executor, self.resources.setup, gpus, self.job_callable, cell.key)
        self._submitted(cell, job)
        self.index.save()

    def _submitted(self, cell: Any, job: Any) -> None:
        self.live[cell.key] = (cell, job)
        self.index.record(cell.key, cell=cell.name, job_id=str(job.job_id), executor=self.kind, state="submitted",
                          stdout=str(job.paths.stdout), stderr=str(job.paths.stderr),
                          submitted=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def windowed(self, cells: list[Any], max_parallel: int) -> list[Any]:
        waiting = list(cells)
        outcomes = []
        while waiting or self.live:
            while waiting and len(self.live) < max_parallel:
                self._submit_one(waiting.pop(0))
            outcomes += self._collect_done()
            if self.live:
                time.sleep(POLL_SECONDS[self.kind])
        return outcomes

    def wait_all(self) -> list[Any]:
        outcomes = []
        while self.live:
            outcomes += self._collect_done()
            if self.live:
                time.sleep(POLL_SECONDS[self.kind])
        return outcomes

    def _collect_done(self) -> list[Any]:
        finished = []
        ended = ended_jobs(self.kind, [job for _, job in self.live.values()])
        for key, (cell, job) in list(self.live.items()):
            if str(job.job_id) not in ended:
                continue
            del self.live[key]
            if self.slots is not None and key in self.slot_of:
                self.slots.release(self.slot_of.pop(key))
            outcome = self._outcome(cell, job)
            self.on_done(outcome)
            finished.append(outcome)
        if finished:
            self.index.save()
        return finished

    def _outcome(self, cell: Any, job: Any) -> Any:
        folder = self.context.folder(cell)
        summary: dict[str, Any] = {}
        error: BaseException | None = None
        try:
            summary = job_result(self.kind, job)
        except Exception as failure:  # the job died: an error in the cell, the node, or the scheduler
            error = failure
        record = store.finished_result(folder)
        ended = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if error is None and record is not None:
            self.index.record(cell.key, state="finished" if record["status"] == store.COMPLETE else "failed",
                              ended=ended, reason=record.get("reason", ""))
            return CellOutcome(cell, folder, record["status"], reused=bool(summary.get("reused")),
                               reason=record.get("reason", ""), seconds=float(summary.get("seconds", 0.0)),
                               logged=bool(summary.get("logged")))
        last = last_line(str(error)) if error is not None else "the job ended without writing the cell's result"
        reason = f"job {job.job_id} failed: {last} (log: {job.paths.stderr})"
        self.index.record(cell.key, state="failed", ended=ended, reason=reason)
        return CellOutcome(cell, folder, store.FAILED, reused=False, reason=reason, logged=True)

    def interrupted(self) -> None:
        """Ctrl-C: local jobs are this process's children and stop with it; SLURM jobs run on."""
        for key, (_, job) in self.live.items():
            if self.kind == "local-jobs":
                job.cancel(check=False)
                self.index.record(key, state="cancelled")
        if self.live and self.kind == "slurm":
            self.context.progress.note(f"{len(self.live)} SLURM jobs keep running; `fbench status` follows them "
                                       f"and `scancel` stops them")


def ended_jobs(kind: str, jobs: list[Any]) -> set[str]:
    """The ids of the submitit ``jobs`` (of executor ``kind``) that have ended. On SLURM: those that wrote their
    result, and those :func:`slurm_states` finds ended without one (a setup line failed, the job was cancelled or
    killed); submitit's own ``done()`` asks ``sacct`` only, which fails where accounting is off, so that such a
    job would be waited for forever."""
    if kind == "debug":
        return {str(job.job_id) for job in jobs}
    if kind != "slurm":
        return {str(job.job_id) for job in jobs if job.done()}
    ended = {str(job.job_id) for job in jobs if job.paths.result_pickle.exists()}
    states = slurm_states([str(job.job_id) for job in jobs if str(job.job_id) not in ended])
    return ended | {job_id for job_id, state in states.items() if state not in SLURM_LIVE_STATES}


def job_result(kind: str, job: Any) -> Any:
    """What an ended job returned (``job.result()``, which raises the job's error). A SLURM job that ended
    without a result raises a RuntimeError naming SLURM's state and its log's last line (``job.result()`` would
    wait for it forever where ``sacct`` does not work)."""
    if kind == "slurm" and not job.paths.result_pickle.exists():
        state = slurm_states([str(job.job_id)]).get(str(job.job_id), "ended")
        log = tail(Path(job.paths.stderr), 5) or tail(Path(job.paths.stdout), 5)
        raise RuntimeError(f"SLURM ended it as {state} before it wrote a result"
                           + (f"; its log ends: {last_line(log)}" if log.strip() else ""))
    return job.result()


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    useful = [line for line in lines if not line.startswith(("You can check full logs", "or at paths", "- /"))]
    return (useful or lines or ["unknown error"])[-1][:500]


EXECUTORS: Registry[Executor] = Registry("executor")
EXECUTORS.register("local", LocalExecutor(), source="fbench built-in")
for _kind in DEFAULTS:
    EXECUTORS.register(_kind, SubmititExecutor(_kind), source="fbench built-in")


def job_alive(job: dict[str, Any]) -> bool | None:
    """True or False when the job's state can be read from here, None when it cannot."""
    state = job.get("state")
    if state in ("finished", "failed", "cancelled"):
        return False
    job_id = str(job.get("job_id", ""))
    if job.get("executor") == "local-jobs" and job_id.isdigit():
        try:
            os.kill(int(job_id), 0)  # the job's controller process, on this machine
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if job.get("executor") == "slurm":
        slurm_state = slurm_states([job_id]).get(job_id)
        if slurm_state is None:
            return None
        if slurm_state in SLURM_LIVE_STATES:
            return True
        return False if slurm_state != "COMPLETED" else None
    return None


SLURM_LIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                               "SUSPENDED", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "STOPPED",
                               "PREEMPTED"})


def slurm_states(job_ids: list[str], timeout: float = 30.0) -> dict[str, str]:
    """SLURM's state of each job (``"RUNNING"``, ``"PENDING"``, ``"FAILED"``, ...), by job id (``<array>_<task>``
    for an array task): from ``scontrol show job``, which knows every job the controller still holds (queued,
    running, or ended less than MinJobAge ago, whether or not the cluster keeps accounting), then from ``sacct``
    for older ones. Jobs neither knows are left out. submitit asks ``sacct`` only, which fails where accounting
    is off (no slurmdbd): its jobs would look alive forever."""
    states: dict[str, str] = {}
    for array in sorted({job_id.split("_")[0] for job_id in job_ids}):
        text = _slurm_output(["scontrol", "show", "job", "-o", array], timeout)
        for line in text.splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if "JobState" not in fields:
                continue
            array_id = fields.get("ArrayJobId", "")
            tasks = array_tasks(fields.get("ArrayTaskId", "")) if array_id else []
            for job_id in [f"{array_id}_{task}" for task in tasks] or [fields.get("JobId", "")]:
                states[job_id] = fields["JobState"]
    missing = [job_id for job_id in job_ids if job_id not in states]
    if missing:
        command = ["sacct", "--noheader", "--parsable2", "--allocations", "--format", "JobID,State"]
        for job_id in missing:
            command += ["--jobs", job_id]
        for line in _slurm_output(command, timeout).splitlines():
            job_id, _, state = line.partition("|")
            if job_id in missing and state:
                states[job_id] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return {job_id: states[job_id] for job_id in job_ids if job_id in states}


def array_tasks(text: str) -> list[int]:
    """The task indices of an array record's ``ArrayTaskId`` (``3``, or ``0-4,7%2`` for tasks still pending
    together)."""
    tasks: list[int] = []
    for part in text.split("%")[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            tasks += range(int(first), int(last or first) + 1)
    return tasks


def _slurm_output(command: list[str], timeout: float) -> str:
    """A SLURM query's standard output; '' when the tool is missing, fails (an unknown or forgotten job, no
    accounting) or hangs."""
    if shutil.which(command[0]) is None:
        return ""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout if completed.returncode == 0 else ''
