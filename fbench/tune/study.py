"""``fbench tune``: an Optuna study over one architecture of a suite, resumable and shared through its storage.

The study lives in its storage (``sqlite:///optuna.db`` by default; any Optuna RDB URL such as
``postgresql://...`` or ``mysql://...`` for many machines; a journal file, ``journal:PATH`` or a path ending in
``.log``/``.journal``, for several processes on one machine, or on many through a shared filesystem; see
``fbench.tune.workers`` for workers submitted as cluster jobs). It is created on first use and loaded after that,
so running the same command again adds trials to it and several processes started on one storage share it.
A study remembers what it was started for (suite, architecture, budget, fold, dataset, objectives); resuming
it for something else is refused rather than mixing incomparable trials.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fbench.engine.devices import resolve_device
from fbench.errors import FbenchError
from fbench.run.context import SYNTHETIC_FOLDER, Progress, RunContext, choose_dataset, load_table, split_table
from fbench.run.provenance import environment_tags, git_commit
from fbench.suite.load import select_architectures
from fbench.suite.schema import ArchitectureConfig, Suite
from fbench.suite.search import SearchSpace
from fbench.suite.tuned import space_for
from fbench.tracking import MlflowTracker, Tracker, TrackingTarget, make_tracker
from fbench.tune.objective import (
    COMPLETE,
    FAILED,
    OBJECTIVES,
    PRUNED,
    Direction,
    Objective,
    TrialFailed,
    TrialOutcome,
    TuningSetup,
    parse_objectives,
)
from fbench.tune.output import study_counts, write_outputs

DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_BUDGET = "tune"
SAMPLERS = ("tpe", "random", "cmaes", "nsga2")
PRUNERS = ("median", "hyperband", "none")
# The median pruner waits for this many complete trials (Optuna's default of 5 leaves nothing to prune in a
# short study), then may stop a trial after any epoch (steps are epochs, counted from 1).
MEDIAN_STARTUP_TRIALS = 3
MEDIAN_WARMUP_EPOCHS = 0
HEARTBEAT_SECONDS = 60
# The study attributes that must match when a study is resumed.
_IDENTITY_KEYS = ("suite", "architecture", "label", "dataset", "budget", "fold", "objectives", "epochs",
                  "train_images_cap")


@dataclass
class TuneOptions:
    """How to tune, beyond the suite (the command line's choices)."""

    architecture: str
    trials: int | None = 20
    timeout: float | None = None
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    sampler: str | None = None  # default: tpe, or nsga2 for several objectives
    pruner: str = "median"
    objective: str = "val_accuracy"
    fold: int = 0
    budget: str | None = None  # default: DEFAULT_BUDGET
    seed: int | None = None  # sampler seed; None: random (so that parallel processes explore differently)
    device: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    tracking: bool | None = None
    tracking_uri: str | None = None
    out: Path | None = None  # default tune/<study name>/
    report: bool = True  # plots and report.md/report.html beside best.yaml
    cache_dir: Path | None = None
    synthetic_folder: Path | None = None
    worker: WorkerTag | None = None  # set in a cluster job (fbench.tune.workers): one of several workers


@dataclass(frozen=True)
class WorkerTag:
    """Which worker of which cluster invocation this process is. A worker marks its trials with both, runs
    ``TuneOptions.trials`` minus those it already ran (a requeued job resumes its share), logs its trials under
    the submitting invocation's MLflow run (``parent``; None: tracking off) and opens no parent run itself."""

    invocation: str
    index: int
    parent: TrackingTarget | None = None

    def attrs(self) -> dict[str, Any]:
        return {"fbench.invocation": self.invocation, "fbench.worker": self.index}

    def owns(self, trial: Any) -> bool:
        return (trial.user_attrs.get("fbench.invocation") == self.invocation
                and trial.user_attrs.get("fbench.worker") == self.index)


@dataclass
class TuneResult:
    study_name: str
    storage: str
    space: SearchSpace
    objectives: list[str]
    directions: list[Direction]
    outcomes: list[TrialOutcome]  # this invocation's trials
    counts: dict[str, int]  # the whole study's trials by state
    best_path: Path | None
    report: dict[str, Path]
    notes: list[str]
    seconds: float


# --------------------------------------------------------------------------------------------------- pieces


def storage_kind(url: str) -> tuple[str, str]:
    """``(kind, URL)``: kind is ``journal``, ``sqlite`` or ``rdb`` (another database), and relative SQLite and
    journal paths are made absolute, so a study is the same one wherever the command (or a job) runs from."""
    text = url.strip()
    journal_path: str | None = None
    if text.startswith("journal:"):
        journal_path = text[len("journal:"):]
    elif not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text) and text.endswith((".log", ".journal")):
        journal_path = text
    if journal_path is not None:
        if not journal_path:
            raise FbenchError("--storage journal: needs a file, e.g. --storage journal:optuna.journal")
        return "journal", f"journal:{Path(journal_path).expanduser().resolve()}"
    if text.startswith("sqlite:///"):
        raw = text[len("sqlite:///"):]
        if raw and raw != ":memory:" and not raw.startswith("/"):
            text = "sqlite:///" + (Path.cwd() / raw).resolve().as_posix()
        return "sqlite", text
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text):
        raise FbenchError(f"--storage {url!r} is neither a database URL (sqlite:///optuna.db, postgresql://..., "
                          f"mysql://...) nor a journal file (journal:PATH, or a path ending in .log/.journal)")
    return "rdb", text


def resolve_storage(url: str) -> tuple[Any, str]:
    """``(storage for optuna, the URL as shown)``, with paths made absolute as :func:`storage_kind` does."""
    kind, text = storage_kind(url)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(text[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path))), text
    if kind == "sqlite":
        # several processes on one SQLite file wait for each other's write lock instead of failing at once
        return _rdb_storage(text, engine_kwargs={"connect_args": {"timeout": 60}}), text
    return _rdb_storage(text), text


def _rdb_storage(url: str, **kwargs: Any) -> Any:
    """An Optuna ``RDBStorage``. Processes that start together on a new database race to create its tables;
    the loser's insert fails once the winner's is in, and a second attempt finds the tables ready."""
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    for attempt in range(5):
        try:
            return RDBStorage(url, **kwargs, **_heartbeat())
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _heartbeat() -> dict[str, Any]:
    """A process that dies mid-trial (kill -9, a lost node) leaves its trial RUNNING; with a heartbeat the next
    process to use the study marks it failed, so resumed studies do not carry ghosts."""
    return {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": 3 * HEARTBEAT_SECONDS}


def make_sampler(name: str | None, multi: bool, seed: int | None) -> Any:
    import optuna

    chosen = name or ("nsga2" if multi else "tpe")
    if chosen not in SAMPLERS:
        raise FbenchError(f"unknown sampler {chosen!r}; use one of {', '.join(SAMPLERS)}")
    if chosen == "cmaes" and multi:
        raise FbenchError("the cmaes sampler optimises one objective; use nsga2 or tpe for several")
    if chosen == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if chosen == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if chosen == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed)


def make_pruner(name: str, multi: bool, epochs: int) -> tuple[Any, str | None]:
    """``(pruner, note)``: Optuna cannot prune several objectives, so pruning is off then, with a note."""
    import optuna

    if name not in PRUNERS:
        raise FbenchError(f"unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")
    if name == "none":
        return optuna.pruners.NopPruner(), None
    if multi:
        return optuna.pruners.NopPruner(), "pruning is off: Optuna prunes single-objective studies only"
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3), None
    pruner = optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS)
    return pruner, None


def default_study_name(suite: Suite, label: str, objectives: list[str]) -> str:
    return f"{suite.name}-{label}-{'+'.join(objectives)}"


def folder_name(study_name: str) -> str:
    """The study name as one safe path component."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", study_name).strip("._") or "study"


def choose_entry(suite: Suite, name: str) -> ArchitectureConfig:
    """The suite entry ``--arch`` names (a name, label or variant label), reduced to one variant whose options
    are merged into the entry's, so that searched options are not overridden by the variant."""
    selected = select_architectures(suite, [name]).architectures
    if len(selected) > 1:
        labels = ", ".join(a.base_label for a in selected)
        raise FbenchError(f"--arch {name!r} matches {len(selected)} entries of suite {suite.name!r} ({labels}); "
                          f"name one by its label")
    entry = selected[0]
    variant = entry.variants[0] if entry.variants else {}
    label = entry.variant_label(variant)
    return entry.model_copy(update={"options": {**entry.options, **variant}, "variants": [{}], "label": label})


def _check_identity(study: Any, identity: dict[str, Any], storage: str) -> None:
    stored = study.user_attrs
    if not stored.get("fbench"):
        if study.trials:
            raise FbenchError(f"study {study.study_name!r} in {storage} was not made by fbench tune; pick another "
                              f"--study-name")
        for key, value in identity.items():
            study.set_user_attr(key, value)
        study.set_user_attr("fbench", 1)
        return
    different = [f"{key}: {stored.get(key)!r} then, {value!r} now" for key, value in identity.items()
                 if key in _IDENTITY_KEYS and stored.get(key) != value]
    if different:
        raise FbenchError(f"study {study.study_name!r} in {storage} was started for something else ("
                          + "; ".join(different) + "); its trials would not be comparable. Give this search "
                          "its own --study-name, or run it as it was started")


# --------------------------------------------------------------------------------------------------- tune


def prepare_setup(suite: Suite, entry: ArchitectureConfig, options: TuneOptions, budget: str,
                  note: Callable[[str], None]) -> TuningSetup:
    """The dataset, the main protocol's fold and the decoded-image cache the trials share."""
    choice = choose_dataset(suite, options.data, note, options.synthetic_folder or SYNTHETIC_FOLDER)
    table = load_table(choice)
    choice.synthetic = choice.synthetic or table.synthetic
    main = suite.protocols(synthetic_fallback=choice.fallback)[0]
    if main[1].leaky:
        raise FbenchError(f"suite {suite.name!r} uses a paper's leaky protocol (validation is the test fold), so it "
                          "has no validation part to score trials on; tune a suite whose protocol carves validation "
                          "from training (leaky: false, e.g. multiview), then apply its best.yaml with tuned_from")
    if main[1].val_fraction <= 0:
        raise FbenchError(f"tuning scores on the validation part of a fold, but the main protocol of suite "
                          f"{suite.name!r} has val_fraction 0; give it one (e.g. --set protocol.val_fraction=0.1)")
    splits = split_table(table, [main])["main"]
    if not 0 <= options.fold < len(splits):
        raise FbenchError(f"--fold {options.fold}: the main protocol has folds 0..{len(splits) - 1}")
    split = splits[options.fold]
    if not split.val:
        raise FbenchError(f"fold {options.fold} has no validation samples; raise protocol.val_fraction")
    device = resolve_device(options.device or suite.device)
    context = RunContext(suite, table, Path(suite.output), device, {"main": splits}, options.cache_dir,
                         progress=Progress(note=note))
    reduced = suite.model_copy(update={"architectures": [entry], "views": []})
    return TuningSetup(reduced, entry, split, options.fold, len(splits), context, str(choice.root.resolve()),
                       table.synthetic, choice.fallback, budget, table.fingerprint())


@dataclass
class StudyPlan:
    """What a study is, checked before any data is read: objectives, budget, the suite entry, space and name."""

    objectives: list[str]
    directions: list[Direction]
    budget: str
    entry: ArchitectureConfig
    space: SearchSpace
    study_name: str
    notes: list[str]

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1


def plan_study(suite: Suite, options: TuneOptions) -> StudyPlan:
    """Check the command's choices against the suite (objectives, trials, budget, ``--arch``, search space)."""
    objectives = parse_objectives(options.objective)
    if options.trials is not None and options.trials < 1:
        raise FbenchError(f"--trials must be at least 1 (got {options.trials})")
    if options.trials is None and options.timeout is None:
        raise FbenchError("give --trials N or --timeout SECONDS (or both); otherwise the study never ends")
    budget = options.budget or DEFAULT_BUDGET
    suite.effective_budget(budget)  # an unknown budget fails here, before any work
    entry = choose_entry(suite, options.architecture)
    space = space_for(suite, entry)
    study_name = options.study_name or default_study_name(suite, entry.base_label, objectives)
    notes = [f"search space ({space.origin}): " + "; ".join(p.describe() for p in space.params)]
    return StudyPlan(objectives, [OBJECTIVES[name] for name in objectives], budget, entry, space, study_name, notes)


def fail_orphans(study: Any, owned: Callable[[Any], bool], reason: str) -> list[int]:
    """Mark failed the RUNNING trials that ``owned`` says belong to a worker known to be dead (a requeued job's
    earlier run; every worker, once all have ended). The journal storage has no heartbeat, so nothing else
    would; on RDB storages this is sooner than the heartbeat's grace period. Returns their numbers."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not owned(trial):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
        except UpdateFinishedTrialError:  # it finished (or another process failed it) meanwhile
            continue
    return failed


def run_tune(suite: Suite, options: TuneOptions, note: Callable[[str], None] = lambda text: None,
             on_trial: Callable[[TrialOutcome], None] = lambda outcome: None) -> TuneResult:
    """Add ``options.trials`` trials (or as many as ``options.timeout`` allows) to the study, log them to MLflow
    and write ``best.yaml``, the plots and a short report. Returns what happened.

    As a cluster worker (``options.worker``) it runs what is left of its share of ``options.trials``, logs its
    trials under the submitting invocation's MLflow run, opens no parent run, and does not fail when no trial
    of the study has completed yet."""
    import optuna

    started = time.perf_counter()
    plan = plan_study(suite, options)
    objectives, directions, budget = plan.objectives, plan.directions, plan.budget
    entry, space, study_name, multi = plan.entry, plan.space, plan.study_name, plan.multi
    notes = list(plan.notes)
    worker = options.worker
    for text in notes:
        note(text)

    setup = prepare_setup(suite, entry, options, budget, note)
    first = setup.cell({})
    setup.context.cache(first.input_size)  # decoded once, before the first trial's clock starts
    pruner, pruner_note = make_pruner(options.pruner, multi, first.recipe.epochs)
    if pruner_note:
        notes.append(pruner_note)
        note(pruner_note)
    sampler = make_sampler(options.sampler, multi, options.seed)
    storage, storage_text = resolve_storage(options.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                                directions=directions, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise FbenchError(f"study {study_name!r} in {storage_text} optimises "
                          f"{[d.name.lower() for d in study.directions]}, not {directions}; give another "
                          f"--study-name")
    identity = {"suite": suite.name, "architecture": entry.name, "label": entry.base_label,
                "dataset": f"{first.dataset}{' (synthetic)' if first.synthetic else ''}", "budget": budget,
                "fold": options.fold, "objectives": objectives, "space": json.dumps(space.to_dict(), sort_keys=True),
                "epochs": first.recipe.epochs, "train_images_cap": first.caps.max_train_images,
                "suite_file": str(Path(suite.source).resolve()) if suite.source else None}
    _check_identity(study, identity, storage_text)
    if study.user_attrs.get("space") != identity["space"]:
        text = (f"the search space differs from the one study {study_name!r} started with; Optuna samples the new "
                f"one from here on")
        notes.append(text)
        note(text)
    before = len(study.trials)
    trials = options.trials
    if worker is not None:
        orphans = fail_orphans(study, worker.owns, "its worker's job was stopped (preempted or out of time) "
                                                   "and requeued")
        if orphans:
            note(f"marked failed trial(s) {', '.join(map(str, orphans))}, left running by this worker's stopped job")
        if trials is not None:
            trials = max(0, trials - sum(1 for trial in study.get_trials(deepcopy=False) if worker.owns(trial)))
    note(f"study {study_name!r} in {storage_text}: {before} trials so far; adding "
         f"{trials if trials is not None else 'as many as fit in'}"
         f"{'' if options.timeout is None else f' (timeout {options.timeout:g} s)'} "
         f"trials of {first.recipe.epochs} epochs on fold {options.fold} (budget {budget})"
         + (f" as worker {worker.index}" if worker is not None else ""))

    enabled = suite.tracking.enabled if options.tracking is None else options.tracking
    if worker is None:
        tracker = make_tracker(enabled, options.tracking_uri or suite.tracking.resolved_uri())
    elif worker.parent is not None:
        tracker = MlflowTracker.attach(worker.parent.uri, worker.parent.experiment_id, worker.parent.parent_run_id)
    else:
        tracker = Tracker()
    outcomes: list[TrialOutcome] = []
    tags = {"suite": suite.name, "study": study_name, "architecture": entry.name, "label": entry.base_label,
            "dataset": first.dataset, "synthetic": str(first.synthetic).lower(), "budget": budget,
            "objectives": ",".join(objectives), "git_commit": git_commit() or "unknown", **environment_tags(),
            **({"invocation": worker.invocation, "worker": str(worker.index)} if worker is not None else {})}

    def logged(outcome: TrialOutcome) -> None:
        outcomes.append(outcome)
        status = {COMPLETE: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED"}[outcome.state]
        tracker.log_cell(f"trial {outcome.number}", {**outcome.params, "trial": outcome.number,
                                                       "cell_key": outcome.cell_key},
                         outcome.history, {f"value.{name}": value for name, value in outcome.values.items()},
                         {**tags, "fbench.kind": "trial", "state": outcome.state, "trial": str(outcome.number),
                          **({"fail_reason": outcome.reason[:500]} if outcome.state == FAILED else {}),
                          **({"pruned_at": outcome.reason} if outcome.state == PRUNED else {})},
                         [], status=status)
        on_trial(outcome)

    objective = Objective(setup, space, objectives, prune=not multi and options.pruner != "none", on_trial=logged,
                          trial_attrs=worker.attrs() if worker is not None else {})
    with tracker:
        if worker is None:
            run_name = f"tune {study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
            tracker.start_suite(f"{suite.experiment}-tune", run_name,
                                {"study": study_name, "storage": storage_text, "objectives": objectives,
                                 "sampler": type(sampler).__name__, "pruner": type(pruner).__name__,
                                 "trials_requested": options.trials, "timeout": options.timeout,
                                 "fold": options.fold, "budget": budget, "space": space.to_dict(),
                                 "space_origin": space.origin},
                                {**tags, "fbench.kind": "study"})
        if trials != 0:  # 0: a requeued worker whose share was already done
            study.optimize(objective, n_trials=trials, timeout=options.timeout, catch=(TrialFailed,))
        out = options.out or Path("tune") / folder_name(study_name)
        best_path, report = write_outputs(study, out, suite=suite, entry=entry, space=space, objectives=objectives,
                                          storage=storage_text, budget=budget, fold=options.fold,
                                          dataset=str(identity["dataset"]), notes=notes, report=options.report)
        counts = study_counts(study)
        summary = {f"trials.{state}": float(n) for state, n in counts.items()}
        if best_path is not None and not multi:
            summary["best_value"] = float(study.best_value)
        if worker is None:
            tracker.log_suite_metrics(summary)
            tracker.log_suite_artifacts([p for p in [best_path, *report.values()] if p is not None])
    if best_path is None and worker is None:
        reasons = sorted({o.reason for o in outcomes if o.state == FAILED})
        raise FbenchError(f"no trial of study {study_name!r} has completed ({counts.get('failed', 0)} failed, "
                          f"{counts.get('pruned', 0)} pruned), so there is no best.yaml"
                          + (f"; failures: {'; '.join(reasons[:3])}" if reasons else ""))
    return TuneResult(study_name, storage_text, space, objectives, directions, outcomes, counts, best_path, report,
                      notes, time.perf_counter() - started)
