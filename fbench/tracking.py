"""MLflow tracking: one experiment per suite, one parent run per invocation, one nested child run per cell.

Tracking is optional. ``make_tracker(False)`` returns the no-op :class:`Tracker`, and nothing in this module
imports mlflow until an :class:`MlflowTracker` is made, so fbench runs where MLflow is not installed (a GPU
machine, say) as long as tracking is off.

:class:`MlflowTracker` talks to the store through its own ``MlflowClient`` with explicit run ids, never through
the fluent ``mlflow.start_run`` active-run stack: nothing depends on global state, and several trackers can
coexist in one process. Writes are batched (``log_batch``) to keep a SQLite store fast.

The default store is ``sqlite:///<working folder>/mlflow.db`` (``MLFLOW_TRACKING_URI`` or an explicit URI win);
MLflow 3 refuses a ``./mlruns`` file store, so plain folders are refused here with a message saying what to use.
For a local SQLite store, each experiment keeps its artifacts beside the database, under ``mlartifacts/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import posixpath
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fbench.data.files import WHAT_TO_DO
from fbench.errors import FbenchError
from fbench.run import store
from fbench.run.cell import CellOutcome
from fbench.run.provenance import environment_tags, git_commit
from fbench.suite.schema import LEAKY_LABEL

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DEFAULT_TRACKING_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "mlartifacts"
NOT_INSTALLED = "MLflow is not installed here; install it or run with --no-tracking"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")

# MLflow's own limits (mlflow.utils.validation in 2.x and 3.x): checked, not guessed.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
TRUNCATION_MARK = "..."

# MLflow allows alphanumerics, "_", "-", ".", " ", "/" (and ":" except on Windows). We keep to the ASCII
# subset without spaces and colons, so keys read the same on every platform and need no quoting in searches.
_BAD_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\-/]+")
_PLACEHOLDER = "\x00"


# --------------------------------------------------------------------------------------------------- helpers


def metric_key(text: str) -> str:
    """``text`` as a key MLflow accepts for a metric, param or tag.

    Runs of other characters become one ``_`` (dropped where they would end a ``.``/``/`` segment),
    slashes are tidied so the key cannot read as another path, and over-long keys are cut with a short hash
    that keeps them apart: ``"acc[mask_kind=surgical]"`` -> ``"acc_mask_kind_surgical"``,
    ``"drop mask_kind=surgical"`` -> ``"drop_mask_kind_surgical"``.
    """
    key = _BAD_KEY_CHARACTERS.sub(_PLACEHOLDER, str(text))
    key = re.sub(_PLACEHOLDER + r"+(?=[./]|$)", "", key)   # no "acc_.x" or a trailing "_"
    key = re.sub(r"(?:^|(?<=[./]))" + _PLACEHOLDER + "+", "", key)  # nor a leading one
    key = key.replace(_PLACEHOLDER, "_")
    # a key must not normalise to another path: no "//", no "." or ".." segments, no leading/trailing "/"
    parts = [part for part in key.split("/") if part]
    parts = [part if part not in (".", "..") else part.replace(".", "_") for part in parts]
    key = "/".join(parts) or "_"
    if posixpath.normpath(key) != key:  # pragma: no cover - defensive; the steps above make this hold
        key = key.replace("/", "_")
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha1(str(text).encode()).hexdigest()[:8]
        key = key[: MAX_KEY_LENGTH - 9].rstrip("/") + "_" + digest
    return key


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        return json.dumps(items, sort_keys=True, default=str)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return str(value.item())  # numpy / torch scalars
    return str(value)


def flatten_params(nested: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as flat MLflow params: ``{"recipe": {"lr": 0.1}}`` -> ``{"recipe.lr": "0.1"}``.

    Keys are joined with ``.`` and cleaned with :func:`metric_key`; values are stringified (lists and tuples
    as JSON, empty mappings as ``{}``) and cut to MLflow's limit of ``MAX_PARAM_VALUE_LENGTH`` characters,
    ending in ``...`` when cut. Two keys that clean to the same text are kept apart with a ``_2``, ``_3`` suffix.
    """
    flat: dict[str, str] = {}

    def visit(value: Any, path: str) -> None:
        if isinstance(value, Mapping) and value:
            for name, inner in value.items():
                visit(inner, f"{path}.{name}" if path else str(name))
            return
        text = "{}" if isinstance(value, Mapping) else _stringify(value)
        key = metric_key(path) if path else "_"
        unique, counter = key, 1
        while unique in flat:
            counter += 1
            unique = f"{key}_{counter}"
        flat[unique] = _truncate(text, MAX_PARAM_VALUE_LENGTH)

    visit(nested, prefix)
    return flat


def _tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags with MLflow's reserved ``mlflow.*`` keys kept as they are and values stringified and cut."""
    cleaned: dict[str, str] = {}
    for key, value in tags.items():
        if value is None:
            continue
        name = key if str(key).startswith("mlflow.") else metric_key(key)
        cleaned[name] = _truncate(_stringify(value), MAX_TAG_VALUE_LENGTH)
    return cleaned


def _finite_metrics(metrics: Mapping[str, Any], where: str) -> dict[str, float]:
    """Metrics with clean keys; NaN and infinite values are skipped (some stores reject them)."""
    kept: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool):
            value = float(value)
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            value = value.item()
        if not isinstance(value, numbers.Real):
            log.debug("%s: metric %r is not a number (%r); not logged", where, name, type(value).__name__)
            continue
        number = float(value)
        if not math.isfinite(number):
            log.debug("%s: metric %r is %s; not logged", where, name, number)
            continue
        kept[metric_key(name)] = number
    return kept


def _resolve_uri(uri: str | None) -> str:
    """The tracking URI: ``uri``, else ``MLFLOW_TRACKING_URI``, else an absolute SQLite file in the cwd.

    A relative ``sqlite:///`` path and a bare ``*.db`` path become absolute ``sqlite:///`` URIs; a folder (the
    old ``./mlruns`` file store, refused by MLflow 3) is refused with the fix.
    """
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if not chosen:
        return "sqlite:///" + (Path.cwd().resolve() / DEFAULT_TRACKING_FILE).as_posix()
    if chosen.startswith("sqlite:///"):
        path = _sqlite_path(chosen)
        if path is not None and str(path) != ":memory:":
            return "sqlite:///" + path.resolve().as_posix()
        return chosen
    if chosen.startswith("databricks"):
        return chosen
    if not re.match(r"[A-Za-z][A-Za-z0-9+.\-]+:", chosen):  # a path, not a URI (C:\... is a path too)
        if chosen.endswith((".db", ".sqlite", ".sqlite3")):
            return "sqlite:///" + Path(chosen).expanduser().resolve().as_posix()
        raise FbenchError(f"tracking URI {chosen!r} is a folder (an MLflow file store, which MLflow 3 refuses); "
                          f"use a database such as sqlite:///{DEFAULT_TRACKING_FILE} or an http(s):// server")
    if chosen.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise FbenchError(f"tracking URI {chosen!r} is an MLflow file store, which MLflow 3 refuses; "
                          f"use a database such as sqlite:///{DEFAULT_TRACKING_FILE} or an http(s):// server")
    return chosen


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (query string dropped), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///"):].split("?", 1)[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw)


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise FbenchError(NOT_INSTALLED) from None
    return mlflow


# --------------------------------------------------------------------------------------------------- trackers


class Tracker:
    """The tracking interface, and the no-op tracker used with tracking off.

    A suite calls :meth:`start_suite` once, :meth:`log_cell` per finished cell, :meth:`log_suite_metrics` and
    :meth:`log_suite_artifacts` for the leaderboard, then :meth:`end`. Used as a context manager, the
    parent run ends FINISHED, or FAILED on an exception, or KILLED on Ctrl-C.
    """

    enabled: bool = False
    uri: str | None = None
    parent_run_id: str | None = None

    def start_suite(self, experiment: str, run_name: str, params: Mapping[str, Any],
                    tags: Mapping[str, Any]) -> None:
        """Open the suite's parent run in ``experiment`` (created if missing)."""

    def log_cell(self, name: str, params: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                 metrics: Mapping[str, float], tags: Mapping[str, Any], artifacts: Sequence[Path],
                 status: str = "FINISHED") -> str | None:
        """Log one cell as a nested child run of the parent; returns the child's run id (None when off)."""
        return None

    def log_suite_metrics(self, metrics: Mapping[str, float]) -> None:
        """Metrics on the parent run (the leaderboard's numbers)."""

    def log_suite_artifacts(self, paths: Sequence[Path]) -> None:
        """Files (or folders) on the parent run: the report, leaderboard tables, plots."""

    def end(self, status: str = "FINISHED") -> None:
        """End the parent run with ``status``: FINISHED, FAILED or KILLED."""
        _check_status(status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.end("FINISHED")
        elif issubclass(kind, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"run status {status!r}: use one of {', '.join(RUN_STATUSES)}")


class MlflowTracker(Tracker):
    """Logs to MLflow through an ``MlflowClient`` of its own (explicit run ids, no fluent global state).

    ``uri``: the tracking URI; default ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlflow.db``.
    ``http(s)://`` tracking servers work too. mlflow is imported when the tracker is made, not before.
    """

    enabled = True

    def __init__(self, uri: str | None = None) -> None:
        self.uri = _resolve_uri(uri)
        self._mlflow = _import_mlflow()
        from mlflow import MlflowClient

        database = _sqlite_path(self.uri) if self.uri is not None else None
        if database is not None:
            check_writable_database(database)
            self.client: MlflowClient = _open_sqlite_store(self.uri, database)
        else:
            self.client = MlflowClient(tracking_uri=self.uri)
        if database is not None:  # parallel cell jobs write to one SQLite file: wait out its lock
            self.client = _RetryOnLock(self.client, database)  # type: ignore[assignment]
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._ended = False

    # -- suite --------------------------------------------------------------------------------------------

    def start_suite(self, experiment: str, run_name: str, params: Mapping[str, Any],
                    tags: Mapping[str, Any]) -> None:
        if self.parent_run_id is not None:
            raise RuntimeError("start_suite was already called on this tracker; make a new one per invocation")
        self.experiment_id = self._experiment(experiment)
        commit = git_commit()
        run_tags = {**environment_tags(), "mlflow.source.type": "LOCAL", "mlflow.source.name": "fbench",
                    "fbench.kind": "suite"}
        if commit:
            run_tags["mlflow.source.git.commit"] = commit
        run_tags.update(_tag_values(tags))
        run = self.client.create_run(self.experiment_id, run_name=run_name)
        self.parent_run_id = run.info.run_id
        self._ended = False
        self._log(self.parent_run_id, params=flatten_params(params), tags=run_tags)

    def log_suite_metrics(self, metrics: Mapping[str, float]) -> None:
        self._log(self._parent(), metrics=[(key, value, 0) for key, value in
                                           _finite_metrics(metrics, "suite").items()])

    def log_suite_artifacts(self, paths: Sequence[Path]) -> None:
        self._artifacts(self._parent(), paths)

    def end(self, status: str = "FINISHED") -> None:
        _check_status(status)
        if self.parent_run_id is None or self._ended:
            return
        self.client.set_terminated(self.parent_run_id, status=status)
        self._ended = True

    @classmethod
    def attach(cls, uri: str, experiment_id: str, parent_run_id: str) -> MlflowTracker:
        """A tracker for a cell job: it logs child runs under a parent run that another process (the one that
        submitted the jobs) opened and will end. Each job makes its own child run, so parallel jobs never write
        to the same run."""
        tracker = cls(uri)
        tracker.experiment_id, tracker.parent_run_id = experiment_id, parent_run_id
        tracker._ended = True  # the parent run is not this process's to end
        return tracker

    # -- cells --------------------------------------------------------------------------------------------

    def log_cell(self, name: str, params: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                 metrics: Mapping[str, float], tags: Mapping[str, Any], artifacts: Sequence[Path],
                 status: str = "FINISHED") -> str | None:
        _check_status(status)
        parent = self._parent()
        assert self.experiment_id is not None
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={PARENT_RUN_TAG: parent, "fbench.kind": "cell"})
        run_id = run.info.run_id
        try:
            points: list[tuple[str, float, int]] = []
            for index, record in enumerate(history):
                step = record.get("epoch", index)
                step = int(step) if isinstance(step, numbers.Integral | float) and not isinstance(step, bool) else index
                curve = {key: value for key, value in record.items() if key != "epoch"}
                points.extend((key, value, step) for key, value in
                              _finite_metrics(curve, f"cell {name} epoch {step}").items())
            points.extend((key, value, 0) for key, value in _finite_metrics(metrics, f"cell {name}").items())
            self._log(run_id, params=flatten_params(params), tags=_tag_values(tags), metrics=points)
            self._artifacts(run_id, artifacts)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status=status)
        return run_id

    # -- internals ----------------------------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise FbenchError(f"MLflow experiment {name!r} (id {found.experiment_id}) in {self.uri} was "
                                  f"deleted; restore it (mlflow experiments restore --experiment-id "
                                  f"{found.experiment_id}), remove it for good (mlflow gc), or name another "
                                  f"experiment in the suite's tracking.experiment")
            return found.experiment_id
        location = None
        database = _sqlite_path(self.uri) if self.uri is not None else None
        if database is not None:
            # keep artifacts beside the database, not in whatever folder the process started in
            location = (database.resolve().parent / ARTIFACTS_FOLDER / metric_key(name).replace("/", "_")).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except self._mlflow.exceptions.MlflowException:
            found = self.client.get_experiment_by_name(name)  # created meanwhile by another process
            if found is None:
                raise
            return found.experiment_id

    def _parent(self) -> str:
        if self.parent_run_id is None:
            raise RuntimeError("call start_suite before logging cells or suite results")
        return self.parent_run_id

    def _log(self, run_id: str, params: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None,
             metrics: Sequence[tuple[str, float, int]] = ()) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        param_list = [Param(key, value) for key, value in (params or {}).items()]
        tag_list = [RunTag(key, value) for key, value in (tags or {}).items()]
        metric_list = [Metric(key, value, now, step) for key, value, step in metrics]
        for batch_params, batch_tags, batch_metrics in _batches(param_list, tag_list, metric_list):
            self.client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)

    def _artifacts(self, run_id: str, paths: Sequence[Path]) -> None:
        for path in paths:
            path = Path(path)
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path))
            else:
                log.warning("artifact %s does not exist; not logged to MLflow run %s", path, run_id)


UNWRITABLE_STORE = ("readonly database", "unable to open database file", "disk I/O error",
                    "database or disk is full")
STORE_ADVICE = "point --tracking-uri at a writable place, or run with --no-tracking"


def check_writable_database(database: Path) -> None:
    """Refuse, with one line naming it, an SQLite store that cannot be written: its folder (SQLite writes its
    journal beside the database) or the file itself. MLflow would otherwise retry for a minute, then fail with a
    SQLAlchemy traceback."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=f".{database.name}.", suffix=".probe", dir=database.parent)
        os.close(descriptor)
        os.unlink(probe)
        if database.exists():
            with database.open("r+b"):
                pass
    except OSError as error:
        in_the_way = error.filename is not None and Path(error.filename) in database.parents  # a file as a folder
        where = f" ({error.filename})" if in_the_way else ""
        advice = WHAT_TO_DO.get(error.errno or 0, f"make {database.parent} writable")
        raise FbenchError(f"cannot write the MLflow store {database}{where}: {error.strerror or error}; {advice}; "
                          f"or {STORE_ADVICE}") from None


def _open_sqlite_store(uri: str, database: Path, wait: float = 120.0) -> MlflowClient:
    """A client of the SQLite store at ``database``, opened under a lock file beside it: MLflow creates a new
    store's tables on first open, and two processes doing that at once fail ("table ... already exists")."""
    from mlflow import MlflowClient

    lock = store.CellLock(database.parent, heartbeat=5.0, stale_seconds=wait, name=f".{database.name}.open.lock")
    deadline = time.monotonic() + wait
    while lock.acquire() is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # another process is opening (maybe creating) the store
    try:
        return MlflowClient(tracking_uri=uri)
    finally:
        lock.release()


class _RetryOnLock:
    """An ``MlflowClient`` whose calls are retried while SQLite reports ``database is locked`` (another cell
    job is writing). A locked write commits nothing, so retrying it cannot log twice. A store that cannot be
    written (read-only, full) is an FbenchError naming the database."""

    ATTEMPTS = 12

    def __init__(self, client: Any, database: Path | None = None) -> None:
        self._client = client
        self._database = database

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self.ATTEMPTS):
                try:
                    return value(*args, **kwargs)
                except Exception as error:  # MlflowException wraps SQLAlchemy's OperationalError
                    problem = next((text for text in UNWRITABLE_STORE if text in str(error)), None)
                    if problem is not None:
                        raise FbenchError(f"cannot write the MLflow store {self._database or 'database'}: "
                                          f"{problem}; {STORE_ADVICE}") from None
                    if "database is locked" not in str(error) or attempt == self.ATTEMPTS - 1:
                        raise
                    log.debug("MLflow store is locked (%s); retrying %s", error, name)
                    time.sleep(min(5.0, 0.1 * 2 ** attempt) * (0.5 + random.random()))
            raise AssertionError("unreachable")

        return call


def _batches(params: list[Any], tags: list[Any], metrics: list[Any]) -> Iterator[tuple[list, list, list]]:
    """Split into requests within MLflow's limits: <= 100 params, <= 100 tags, <= 1000 entities in all."""
    while params or tags or metrics:
        batch_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        batch_tags, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = MAX_ENTITIES_PER_BATCH - len(batch_params) - len(batch_tags)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        yield batch_params, batch_tags, batch_metrics


def make_tracker(enabled: bool, uri: str | None = None) -> Tracker:
    """An :class:`MlflowTracker` when ``enabled``, else the no-op :class:`Tracker` (mlflow never imported)."""
    if not enabled:
        return Tracker()
    return MlflowTracker(uri)


# --------------------------------------------------------------------------------------------------- cells


def skipped_image_tags(bad: Mapping[str, str]) -> dict[str, str]:
    """The parent run's tags for image files left out (``--on-error skip``): ``skipped_images`` (the count) and
    ``skipped_image_files`` (``path (reason); ...``, truncated to MLflow's tag length; the report folder's
    ``skipped-images.txt`` artifact holds them all). Nothing when no file was left out."""
    if not bad:
        return {}
    return {"skipped_images": str(len(bad)),
            "skipped_image_files": "; ".join(f"{path} ({reason})" for path, reason in bad.items())}


def selection_tags(leaky_views: Sequence[str], views: Sequence[str]) -> dict[str, str]:
    """Tags that say where models were selected: ``leaky=true``, ``model_selection=test fold`` and the label
    "leaky: model selection on the test fold" when any of ``views`` (of all ``views``) selects on the test fold."""
    if not leaky_views:
        return {"leaky": "false", "model_selection": "validation split"}
    where = "test fold" if set(views) <= set(leaky_views) else f"test fold in {', '.join(leaky_views)}; " \
                                                                 "validation split elsewhere"
    return {"leaky": "true", "model_selection": where, "leaky_note": LEAKY_LABEL}


def log_cell(tracker: Tracker, outcome: CellOutcome, suite_tags: Mapping[str, str]) -> None:
    """Log a finished cell as a child run: its config, history, metrics per condition, tags and files."""
    cell, folder = outcome.cell, outcome.folder
    history = store.read_json(folder / store.HISTORY) if (folder / store.HISTORY).is_file() else []
    metrics: dict[str, float] = {}
    if (folder / store.METRICS).is_file():
        for row in store.read_json(folder / store.METRICS):
            for name in ("accuracy", "balanced_accuracy", "macro_f1", "drop_from_clean"):
                value = row.get(name)
                if value is not None:
                    metrics[f"{name}.{row['condition']}"] = float(value)
    suite_level = {k: v for k, v in suite_tags.items() if k != "leaky_note"}  # the cell's own selection tags win
    tags = {**suite_level, "architecture": cell.architecture, "label": cell.label, "view": cell.view,
            "fold": str(cell.fold), "seed": str(cell.seed), "status": outcome.status, "cell_key": cell.key,
            **selection_tags([cell.view] if cell.leaky else [], [cell.view])}
    if outcome.reason:
        tags["failure"] = outcome.reason[:500]
    artifacts = [folder / name for name in (store.PREDICTIONS, store.METRICS, store.CONFIG)
                 if (folder / name).is_file()]
    tracker.log_cell(cell.name, cell.to_dict(), history, metrics, tags, artifacts)


@dataclass(frozen=True)
class TrackingTarget:
    """The MLflow parent run that jobs (cells, tuning workers) log their child runs under."""

    uri: str
    experiment_id: str
    parent_run_id: str

    @classmethod
    def of(cls, tracker: Tracker) -> TrackingTarget | None:
        """The target of ``tracker``'s open parent run; None when tracking is off."""
        if not tracker.enabled or not tracker.parent_run_id or tracker.uri is None:
            return None
        return cls(tracker.uri, str(getattr(tracker, "experiment_id", "")), tracker.parent_run_id)


@dataclass(frozen=True)
class CellJobLogger:
    """Picklable: a cluster job calls it with its cell's outcome to log the child run itself. Returns False (and
    says why) when the store refuses, so that the submitting process logs the cell instead."""

    target: TrackingTarget
    suite_tags: dict[str, str]

    def __call__(self, outcome: CellOutcome) -> bool:
        try:
            tracker = MlflowTracker.attach(self.target.uri, self.target.experiment_id, self.target.parent_run_id)
            log_cell(tracker, outcome, self.suite_tags)
        except Exception as error:  # the cell's results are on disk; tracking must not fail the cell
            print(f"fbench: could not log cell {outcome.cell.name} to MLflow at {self.target.uri}: {error}",
                  file=sys.stderr, flush=True)
            return False
        return True


# --------------------------------------------------------------------------------------------------- the UI


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The command line that serves the MLflow UI for ``uri``."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def _check_store(uri: str) -> None:
    database = _sqlite_path(uri)
    if database is not None and not database.is_file():
        raise FbenchError(f"no MLflow store at {database}: run a suite first (fbench run suites/smoke.yaml), "
                          f"or point --tracking-uri at an existing store")


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise FbenchError(f"cannot serve the MLflow UI on {host}:{port} ({error.strerror or error}); "
                              f"pick another port with --port") from None


def _experiment_fragment(uri: str, experiment: str | None) -> str:
    if not experiment:
        return ""
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if found is None:
        log.warning("MLflow experiment %r is not in %s; opening the UI's front page", experiment, uri)
        return ""
    return f"#/experiments/{found.experiment_id}"


def run_ui(uri: str | None = None, host: str = "127.0.0.1", port: int = 5000, experiment: str | None = None) -> int:
    """Serve the MLflow UI for ``uri`` (default as for tracking) until Ctrl-C; returns the server's exit status.

    Prints the address (of ``experiment``'s page, when named). The server runs in a process group of its own,
    stopped whole (its workers too) when this function leaves: Ctrl-C returns 0; another KeyboardInterrupt (the
    CLI's SIGTERM) is raised again once the server is stopped and its port free.
    """
    resolved = _resolve_uri(uri)
    _check_store(resolved)
    _import_mlflow()
    _check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/{_experiment_fragment(resolved, experiment)}"
    print(f"MLflow UI for {resolved}\n  {address}\n  (Ctrl-C to stop)", flush=True)
    process = subprocess.Popen(ui_command(resolved, host, port), start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt as interrupt:
        stop_process_group(process)
        print("MLflow UI stopped.", flush=True)
        if type(interrupt) is not KeyboardInterrupt:
            raise
        return 0


def stop_process_group(process: subprocess.Popen, grace: float = 2.0) -> None:
    """Stop ``process`` and every process of its group (it leads one: ``start_new_session``): SIGTERM, then
    SIGKILL when the leader has not ended after ``grace`` seconds; what is left of the group is killed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the leader, or a leader that would not end
    process.wait()
