"""``fbench tune --executor slurm|local-jobs|debug --workers W``: one study filled by W jobs.

The workers are submitted through the executors and resources of ``fbench run --executor`` (``fbench.run.executors``:
a SLURM job array, local processes with a GPU each, or in-process for debugging). Each job rebuilds the suite's
tuning setup and runs the same loop as the local command (:func:`fbench.tune.study.run_tune`) on the one
storage they share, so the storage must be one that every job can reach and write safely: a PostgreSQL or MySQL
URL, or a journal file on the shared filesystem. SQLite is refused on SLURM (its locks do not hold on network
filesystems).

``--trials N`` is the total this invocation adds: worker i runs ``N // W`` trials, one more for the first
``N % W`` workers. Every trial is marked with the invocation and its worker, so a worker requeued after a
preemption or at its time limit marks its interrupted trial failed and runs only what is left of its share.
The submitting process opens the MLflow parent run (each worker logs its trials as child runs under it), waits
for the workers (unless ``--no-wait``; then the last worker to finish leaves the most complete ``best.yaml``),
fails any trial a worker left running, and writes ``best.yaml``, the plots and the report from the study.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbench.errors import FbenchError
from fbench.registry import load_plugins
from fbench.run import store
from fbench.run.executors import (
    DEFAULTS,
    POLL_SECONDS,
    GpuSlots,
    Resources,
    ended_jobs,
    job_result,
    last_line,
    make_executor,
    resolve_resources,
    submit_local,
    visible_gpus,
)
from fbench.run.jobs import job_environment
from fbench.suite.schema import Suite
from fbench.tracking import TrackingTarget, make_tracker
from fbench.tune.objective import COMPLETE, FAILED, PRUNED, TrialOutcome
from fbench.tune.output import study_counts, write_outputs
from fbench.tune.study import (
    StudyPlan,
    TuneOptions,
    TuneResult,
    WorkerTag,
    fail_orphans,
    folder_name,
    plan_study,
    resolve_storage,
    run_tune,
    storage_kind,
)

EXECUTORS = tuple(DEFAULTS)  # slurm, local-jobs, debug
JOBS_RECORD = "jobs.json"  # in the output folder: each worker's job id, logs and state
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")


@dataclass
class TuneCluster:
    """How the workers run: the executor, how many, the command line's resources, whether to wait."""

    executor: str
    workers: int = 1
    resources: dict[str, Any] = field(default_factory=dict)  # overrides of the suite's resources: block
    wait: bool = True
    plugins: list[str] = field(default_factory=list)  # --plugin modules, imported again in each job


@dataclass
class TuneJobSpec:
    """Everything a worker needs, picklable: the validated suite and the options, with storage, output and
    cache made absolute, and the MLflow parent run."""

    suite: Suite
    options: TuneOptions
    cwd: str
    invocation: str
    workers: int
    plugins: list[str] = field(default_factory=list)
    parent: TrackingTarget | None = None


def trial_shares(trials: int | None, workers: int) -> list[int | None]:
    """Each worker's share of ``trials`` (None: no count, the timeout decides)."""
    if trials is None:
        return [None] * workers
    return [trials // workers + (1 if index < trials % workers else 0) for index in range(workers)]


def shareable_storage(url: str, executor: str) -> tuple[str, list[str]]:
    """``(absolute storage URL, notes)`` for workers of ``executor``, or an error naming a storage that jobs
    cannot share safely."""
    kind, text = storage_kind(url)
    if kind == "sqlite" and text in ("sqlite:///:memory:", "sqlite:///"):
        raise FbenchError(f"--storage {url}: an in-memory database lives in one process; the workers need a "
                          f"storage they all open, e.g. --storage journal:optuna.journal")
    if kind == "sqlite" and executor == "slurm":
        path = text[len("sqlite:///"):]
        suggestion = Path(path).with_suffix(".journal")
        raise FbenchError(f"--storage {text}: SQLite is unsafe for jobs on several nodes (its file locks do not "
                          f"hold on NFS and similar shared filesystems, so concurrent workers can corrupt the "
                          f"study). Use a journal file on the shared filesystem, --storage journal:{suggestion}, "
                          f"or a database server, --storage postgresql://USER:PASSWORD@HOST/DB (or mysql://...)")
    notes = []
    if kind == "journal" and executor == "slurm":
        path = text[len("journal:"):]
        if path.startswith(NODE_LOCAL):
            notes.append(f"the journal {path} must be on a filesystem every node sees; {path.split('/')[1]} "
                         f"is usually local to each node (use a folder on the shared filesystem)")
    return text, notes


# --------------------------------------------------------------------------------------------------- worker


class TuneWorker:
    """The callable submitted per worker: ``TuneWorker(spec)(index)`` runs worker ``index``'s share of the
    trials and returns a small summary. Its ``checkpoint`` method has submitit requeue it on preemption or at
    the time limit; the requeued worker resumes its share."""

    def __init__(self, spec: TuneJobSpec) -> None:
        self.spec = spec

    def __call__(self, index: int) -> dict[str, Any]:

        spec = self.spec
        os.chdir(spec.cwd)
        load_plugins([*spec.plugins, *spec.suite.plugins])
        share = trial_shares(spec.options.trials, spec.workers)[index]
        seed = None if spec.options.seed is None else spec.options.seed + index  # differing draws per worker
        options = dataclasses.replace(spec.options, trials=share, seed=seed,
                                      worker=WorkerTag(spec.invocation, index, spec.parent))
        where = job_environment().get("job_id", "")
        print(f"fbench: tuning worker {index} of {spec.workers}{f' (job {where})' if where else ''}: "
              f"{share if share is not None else 'as many as the timeout allows'} trials", flush=True)
        result = run_tune(spec.suite, options, note=lambda text: print(f"fbench: {text}", flush=True),
                          on_trial=lambda o: print(f"fbench: trial {o.number} {o.state} in {o.seconds:.0f} s "
                                                   f"{o.values or o.reason}", flush=True))
        states = {state: sum(1 for o in result.outcomes if o.state == state) for state in (COMPLETE, PRUNED, FAILED)}
        return {"worker": index, "trials": len(result.outcomes), "states": states, "seconds": result.seconds}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        print("fbench: job preempted or out of time: requeued; the worker resumes its share of the trials",
              flush=True)
        return DelayedSubmission(type(self)(self.spec), *args, **kwargs)


# --------------------------------------------------------------------------------------------------- submitter


def _resources(kind: str, suite: Suite, cluster: TuneCluster) -> Resources:
    if cluster.resources.get("processes_per_cell"):
        raise FbenchError("--processes-per-cell does not apply to tuning: a worker runs one trial at a time in "
                          "one process; use --workers to run more at once")
    resources = resolve_resources(kind, suite.resources, cluster.resources)
    if cluster.resources.get("max_parallel") is None:
        resources.max_parallel = cluster.workers  # all at once; the suite's value is about cells
    return resources


def submit_tune(suite: Suite, options: TuneOptions, cluster: TuneCluster,
                note: Callable[[str], None] = lambda text: None) -> TuneResult:
    """Run ``options.trials`` trials of the study as ``cluster.workers`` jobs, then (when waiting) write
    ``best.yaml``, the plots and the report from the study, as :func:`~fbench.tune.study.run_tune` does."""

    started = time.perf_counter()
    kind = cluster.executor
    if kind not in EXECUTORS:
        raise FbenchError(f"--executor {kind!r} cannot run tuning workers; use local (this process), "
                          f"{', '.join(EXECUTORS)}")
    if cluster.workers < 1:
        raise FbenchError(f"--workers must be at least 1 (got {cluster.workers})")
    plan = plan_study(suite, options)
    if options.trials is not None and options.trials < cluster.workers:
        raise FbenchError(f"--trials {options.trials} is fewer than --workers {cluster.workers}; every worker needs "
                          f"a trial: give --trials {cluster.workers} or more, or fewer workers")
    if not cluster.wait and kind != "slurm":
        raise FbenchError(f"--no-wait needs a scheduler that outlives this process; with --executor {kind} this "
                          f"process runs the workers: use --executor slurm, or leave out --no-wait")
    storage_text, storage_notes = shareable_storage(options.storage, kind)
    try:
        resolve_storage(storage_text)  # a wrong URL or an unreachable server fails here, before any job
    except FbenchError:
        raise
    except Exception as error:  # a missing database driver, a refused connection, bad credentials
        raise FbenchError(f"cannot open --storage {storage_text}: {type(error).__name__}: {error}") from None
    resources = _resources(kind, suite, cluster)
    out = (options.out or Path("tune") / folder_name(plan.study_name)).resolve()
    cache_dir = options.cache_dir.resolve() if options.cache_dir else None
    notes = [*plan.notes, *storage_notes]
    for text in notes:
        note(text)

    enabled = suite.tracking.enabled if options.tracking is None else options.tracking
    tracker = make_tracker(enabled, options.tracking_uri or suite.tracking.resolved_uri())
    invocation = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    shares = trial_shares(options.trials, cluster.workers)
    with tracker:
        tracker.start_suite(
            f"{suite.experiment}-tune", f"tune {plan.study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            {"study": plan.study_name, "storage": storage_text, "objectives": plan.objectives,
             "sampler": options.sampler or ("nsga2" if plan.multi else "tpe"), "pruner": options.pruner,
             "trials_requested": options.trials, "timeout": options.timeout, "fold": options.fold,
             "budget": plan.budget, "space": plan.space.to_dict(), "space_origin": plan.space.origin,
             "executor": kind, "workers": cluster.workers},
            {"suite": suite.name, "study": plan.study_name, "architecture": plan.entry.name,
             "label": plan.entry.base_label, "invocation": invocation, "fbench.kind": "study"})
        parent = TrackingTarget.of(tracker)
        spec = TuneJobSpec(suite, dataclasses.replace(options, storage=storage_text, out=out, cache_dir=cache_dir),
                           os.getcwd(), invocation, cluster.workers, list(cluster.plugins), parent)
        runs = _WorkerRuns(kind, make_executor(kind, out / "jobs", resources, f"fbench-tune-{out.name}"),
                           TuneWorker(spec), resources, out / JOBS_RECORD, invocation, note)
        note(f"submitting {cluster.workers} tuning worker(s) as {kind} jobs on {storage_text}: "
             + (f"{options.trials} trials in all ({', '.join(map(str, shares))})" if options.trials is not None
                else f"each for {options.timeout:g} s") + f"; logs in {out / 'jobs'}")
        try:
            runs.run(cluster.workers, wait=cluster.wait)
        except KeyboardInterrupt:
            runs.interrupted()
            raise
        if not cluster.wait:
            note(f"submitted and not waiting (--no-wait): the workers' logs are in {out / 'jobs'} and their job ids "
                 f"in {out / JOBS_RECORD}; the last worker to finish writes {out / 'best.yaml'}")
            return TuneResult(plan.study_name, storage_text, plan.space, plan.objectives, plan.directions, [], {},
                              None, {}, notes, time.perf_counter() - started)
        study, best_path, report, outcomes = _finish(suite, options, plan, storage_text, out, invocation, notes,
                                                     runs.failures, note)
        counts = study_counts(study)
        summary = {f"trials.{state}": float(n) for state, n in counts.items()}
        if best_path is not None and not plan.multi:
            summary["best_value"] = float(study.best_value)
        tracker.log_suite_metrics(summary)
        tracker.log_suite_artifacts([p for p in [best_path, *report.values()] if p is not None])
    if best_path is None:
        reasons = sorted({o.reason for o in outcomes if o.state == FAILED}) + runs.failures
        raise FbenchError(f"no trial of study {plan.study_name!r} has completed ({counts.get('failed', 0)} failed, "
                          f"{counts.get('pruned', 0)} pruned), so there is no best.yaml"
                          + (f"; failures: {'; '.join(reasons[:3])}" if reasons else ""))
    return TuneResult(plan.study_name, storage_text, plan.space, plan.objectives, plan.directions, outcomes, counts,
                      best_path, report, notes, time.perf_counter() - started)


def _finish(suite: Suite, options: TuneOptions, plan: StudyPlan, storage_text: str, out: Path, invocation: str,
            notes: list[str], failures: list[str], note: Callable[[str], None]
            ) -> tuple[Any, Path | None, dict[str, Path], list[TrialOutcome]]:
    """After the workers: fail the trials they left running, write the outputs, gather this invocation's trials.
    Returns ``(study, best.yaml, report files, this invocation's trials)``."""
    import optuna

    storage, _ = resolve_storage(storage_text)
    try:
        study = optuna.load_study(study_name=plan.study_name, storage=storage)
    except KeyError:
        raise FbenchError(f"no worker created study {plan.study_name!r} in {storage_text}"
                          + (f": {'; '.join(failures[:3])}" if failures else "")) from None
    orphans = fail_orphans(study, lambda t: t.user_attrs.get("fbench.invocation") == invocation,
                           "its worker ended without finishing it")
    if orphans:
        note(f"marked failed trial(s) {', '.join(map(str, orphans))}, left running by workers that have ended")
    best_path, report = write_outputs(study, out, suite=suite, entry=plan.entry, space=plan.space,
                                      objectives=plan.objectives, storage=storage_text, budget=plan.budget,
                                      fold=options.fold, dataset=str(study.user_attrs.get("dataset", "unknown")),
                                      notes=notes, report=options.report)
    outcomes = [_outcome(trial, plan.objectives) for trial in study.get_trials(deepcopy=False)
                if trial.user_attrs.get("fbench.invocation") == invocation]
    return study, best_path, report, outcomes


def _outcome(trial: Any, objectives: list[str]) -> TrialOutcome:
    """A stored trial of this invocation, as the local command reports its own."""
    state = {"COMPLETE": COMPLETE, "PRUNED": PRUNED}.get(trial.state.name, FAILED)
    values = dict(zip(objectives, trial.values)) if trial.values else {}
    reason = str(trial.user_attrs.get("fail_reason") or trial.user_attrs.get("pruned_at") or "")
    return TrialOutcome(trial.number, state, dict(trial.params), values, reason=reason,
                        seconds=float(trial.user_attrs.get("seconds", 0.0)),
                        cell_key=str(trial.user_attrs.get("cell_key", "")))


class _WorkerRuns:
    """Submits the workers (local jobs each with their own GPUs), follows them, records them in ``jobs.json``."""

    def __init__(self, kind: str, executor: Any, worker: TuneWorker, resources: Resources, record: Path,
                 invocation: str, note: Callable[[str], None]) -> None:
        self.kind = kind
        self.executor = executor
        self.worker = worker
        self.resources = resources
        self.record = record
        self.note = note
        self.slots = GpuSlots(visible_gpus(), resources.gpus_per_cell) if kind == "local-jobs" else None
        self.live: dict[int, tuple[Any, int | None]] = {}  # worker index -> (job, GPU slot)
        self.jobs: dict[str, Any] = {"format": 1, "invocation": invocation, "executor": kind, "workers": {}}
        self.failures: list[str] = []

    def run(self, workers: int, wait: bool) -> None:
        waiting = list(range(workers))
        if self.kind != "local-jobs":  # SLURM: one array, its parallelism set by max_parallel
            jobs = self.executor.map_array(self.worker, waiting)
            for index, job in zip(waiting, jobs):
                self._submitted(index, job, None)
            waiting = []
            self._save()
        if not wait:
            return
        while waiting or self.live:
            while waiting and len(self.live) < self.resources.max_parallel:
                index = waiting.pop(0)
                slot, gpus = self.slots.acquire() if self.slots is not None else (None, [])
                job = submit_local(self.executor, self.resources.setup, gpus, self.worker, index)
                self._submitted(index, job, slot, gpus)
                self._save()
            self._collect()
            if self.live:
                time.sleep(POLL_SECONDS[self.kind])

    def _submitted(self, index: int, job: Any, slot: int | None, gpus: list[str] | None = None) -> None:
        self.live[index] = (job, slot)
        self.jobs["workers"][str(index)] = {
            "job_id": str(job.job_id), "state": "submitted", "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **({"gpus": ",".join(gpus)} if gpus else {})}

    def _collect(self) -> None:
        changed = False
        ended = ended_jobs(self.kind, [job for job, _ in self.live.values()])
        for index, (job, slot) in list(self.live.items()):
            if str(job.job_id) not in ended:
                continue
            del self.live[index]
            if slot is not None and self.slots is not None:
                self.slots.release(slot)
            entry = self.jobs["workers"][str(index)]
            entry["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            try:
                summary = job_result(self.kind, job)
            except Exception as error:  # the worker died: an error in it, the node, or the scheduler
                reason = f"worker {index} (job {job.job_id}) failed: {last_line(str(error))} (log: {job.paths.stderr})"
                entry.update(state="failed", reason=reason)
                self.failures.append(reason)
                self.note(reason)
            else:
                states = summary.get("states", {})
                entry.update(state="finished", trials=summary.get("trials", 0))
                self.note(f"worker {index} (job {job.job_id}) finished: {summary.get('trials', 0)} trials ("
                          + ", ".join(f"{n} {state}" for state, n in states.items()) + ")")
            changed = True
        if changed:
            self._save()

    def _save(self) -> None:
        store.write_json(self.record, self.jobs)

    def interrupted(self) -> None:
        """Ctrl-C: local workers are this process's children and stop with it; SLURM workers run on."""
        if self.kind == "slurm" and self.live:
            self.note(f"{len(self.live)} SLURM tuning workers keep running (job ids in {self.record}); `scancel` "
                      f"stops them")
            return
        for index, (job, _) in self.live.items():
            job.cancel(check=False)
            self.jobs["workers"][str(index)]["state"] = "cancelled"
        self._save()
