"""MLflow tracking: one experiment per suite, one parent run per invocation, one nested child run per cell.

Beside the cells, a summary run per architecture x view (tag ``fbench.kind=summary``) holds that architecture's
leaderboard numbers, so that the runs table, filtered to summary runs and sorted by accuracy, is the leaderboard
(:func:`leaderboard_fragment`, what ``fbench ui`` prints). Experiments are tagged as model training
(``mlflow.experimentKind``), not GenAI.

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
from urllib.parse import quote, urlencode

from fbench.data.files import WHAT_TO_DO
from fbench.errors import FbenchError
from fbench.run import store
from fbench.run.cell import CellOutcome
from fbench.run.provenance import environment_tags, git_commit
from fbench.suite.schema import LEAKY_LABEL

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow import MlflowClient

    from fbench.run.cells import Cell
    from fbench.score.leaderboard import Leaderboard

log = logging.getLogger(__name__)

DEFAULT_TRACKING_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "mlartifacts"
NOT_INSTALLED = "MLflow is not installed here; install it or run with --no-tracking"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
KIND_TAG = "fbench.kind"  # what a run is: "suite" (the parent), "cell", or "summary" (one per architecture x view)
SUMMARY_KIND = "summary"
SUMMARY_METRIC = "accuracy"  # a summary run's clean accuracy (mean over runs): sorting by it is the leaderboard
# MLflow 3 tells model-training experiments from GenAI ones by this experiment tag (mlflow.entities.ExperimentKind
# in the UI: "custom_model_development"; mlflow/demo tags GenAI ones "genai_development"). MLflow 3.17's UI also
# keeps a workflow type of its own (a switch, remembered in the browser) that the URL's ``workflowType`` sets.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
UI_WORKFLOW = "machine_learning"
# A saved view of the runs table (MLflow 3's "Views" menu, opened by the address's ``viewStateShareKey``): an
# experiment tag ``mlflow.sharedViewState.<id>`` holding {name, createdAt, updatedAt, state} with the state as JSON
# text (the UI's own format). Ours filters to the summary runs, sorts by accuracy and shows the leaderboard's columns,
# which the address's query alone cannot (the UI keeps chosen columns in the browser).
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
LEADERBOARD_VIEW = "fbench-leaderboard"
LEADERBOARD_VIEW_NAME = "fbench leaderboard"
LEADERBOARD_COLUMNS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy", "macro_f1", "rank",
                       "p_holm", "params", "macs", "latency_ms")

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

    def log_summary(self, label: str, view: str, params: Mapping[str, Any], metrics: Mapping[str, float],
                    tags: Mapping[str, Any]) -> str | None:
        """Log ``label``'s numbers on ``view`` as a summary run under the parent (one per architecture x view in
        the experiment, reused by later invocations); returns its run id (None when off)."""
        return None

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
        self._view_saved = False
        self._database = database

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

    # -- summaries ----------------------------------------------------------------------------------------

    def log_summary(self, label: str, view: str, params: Mapping[str, Any], metrics: Mapping[str, float],
                    tags: Mapping[str, Any]) -> str:
        """The summary run of ``label`` on ``view``, made under the parent run, or the one an earlier invocation
        made (found by its tags), moved under this parent and logged again: the experiment keeps one per
        architecture x view. One whose params changed, or that holds a metric this one lacks (MLflow can change
        neither), is deleted and made anew. NaN and infinite metrics are left out."""
        parent = self._parent()
        assert self.experiment_id is not None
        flat = flatten_params(params)
        numbers = _finite_metrics(metrics, f"summary {label} {view}")
        run_tags = {**_tag_values(tags), PARENT_RUN_TAG: parent, KIND_TAG: SUMMARY_KIND, "label": label,
                    "view": view}
        kept: str | None = None
        self._leaderboard_view()
        with _store_lock(self._database, "summaries"):  # two processes of one suite must not both make the run
            for found in self._summaries(label, view):
                if kept is None and found.data.params == flat and set(found.data.metrics) <= set(numbers):
                    kept = found.info.run_id
                else:
                    self.client.delete_run(found.info.run_id)
            if kept is None:
                kept = self.client.create_run(self.experiment_id, run_name=f"{label} \u00b7 {view}",
                                              tags={PARENT_RUN_TAG: parent, KIND_TAG: SUMMARY_KIND}).info.run_id
                self._log(kept, params=flat)
            self._log(kept, tags=run_tags, metrics=[(key, value, 0) for key, value in numbers.items()])
            self.client.set_terminated(kept, status="FINISHED")
        return kept

    def _leaderboard_view(self) -> None:
        """Save the leaderboard view in the experiment (once per tracker; kept when it is already the same)."""
        if self._view_saved or self.experiment_id is None:
            return
        tag = SAVED_VIEW_PREFIX + LEADERBOARD_VIEW
        state = leaderboard_view_state()
        found = self.client.get_experiment(self.experiment_id).tags.get(tag)
        envelope: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError):
            envelope = dict(json.loads(found)) if found else {}
        if envelope.get("state") != state or envelope.get("name") != LEADERBOARD_VIEW_NAME:
            now = int(time.time() * 1000)
            created = envelope.get("createdAt")
            value = {"name": LEADERBOARD_VIEW_NAME, "createdAt": created if isinstance(created, int) else now,
                     "updatedAt": now, "state": state}
            self.client.set_experiment_tag(self.experiment_id, tag, json.dumps(value))
        self._view_saved = True

    def _summaries(self, label: str, view: str) -> list[Any]:
        """The experiment's live summary runs of ``label`` on ``view``, oldest first."""
        assert self.experiment_id is not None
        found = self.client.search_runs([self.experiment_id], filter_string=summary_filter(),
                                        max_results=MAX_ENTITIES_PER_BATCH, order_by=["attributes.start_time ASC"])
        return [run for run in found if run.data.tags.get("label") == label and run.data.tags.get("view") == view]

    # -- internals ----------------------------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise FbenchError(f"MLflow experiment {name!r} (id {found.experiment_id}) in {self.uri} was "
                                  f"deleted; restore it (mlflow experiments restore --experiment-id "
                                  f"{found.experiment_id}), remove it for good (mlflow gc), or name another "
                                  f"experiment in the suite's tracking.experiment")
            if found.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:  # made by an older fbench, or by hand
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
            return found.experiment_id
        location = None
        database = _sqlite_path(self.uri) if self.uri is not None else None
        if database is not None:
            # keep artifacts beside the database, not in whatever folder the process started in
            location = (database.resolve().parent / ARTIFACTS_FOLDER / metric_key(name).replace("/", "_")).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
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


@contextlib.contextmanager
def _store_lock(database: Path | None, what: str, wait: float = 120.0) -> Iterator[None]:
    """Held by one fbench process at a time for ``what`` in the SQLite store ``database`` (a lock file beside it,
    waited for at most ``wait`` seconds); nothing for other stores."""
    if database is None:
        yield
        return
    lock = store.CellLock(database.parent, heartbeat=5.0, stale_seconds=wait, name=f".{database.name}.{what}.lock")
    deadline = time.monotonic() + wait
    while lock.acquire() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield
    finally:
        lock.release()


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


# ---------------------------------------------------------------------------------------------- summaries

# a cell's fields that differ between the runs of one architecture x view, or between machines: left out of the
# summary run's params (its ``folds_run`` and ``seeds`` params name the runs it sums up)
_PER_CELL_FIELDS = ("fold", "seed", "dataset_root", "dataset_fingerprint", "format", "suite", "label", "view")
_NOT_A_PERTURBATION = ("clean", "pose")  # "pose" is a breakdown of clean accuracy, logged per pose instead


@dataclass(frozen=True)
class Summary:
    """One architecture x view of a suite's leaderboards, as a summary run logs it."""

    label: str
    view: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]


def summary_filter() -> str:
    """The MLflow search filter that keeps a suite experiment's summary runs."""
    return f"tags.`{KIND_TAG}` = '{SUMMARY_KIND}'"


def summaries(leaderboards: Sequence[Leaderboard], cells: Sequence[Cell],
              profiles: Mapping[str, Mapping[str, Any]]) -> list[Summary]:
    """Every architecture x view of ``leaderboards``, best first per view.

    Metrics: ``accuracy`` (clean, mean over runs) with ``accuracy_std``, ``accuracy_ci_low`` and
    ``accuracy_ci_high``; ``balanced_accuracy`` and ``macro_f1`` (with ``_std``); ``accuracy.pose.<pose>``;
    ``accuracy.<condition>`` and ``drop_from_clean.<condition>`` per perturbation; ``rank`` (1 = best; absent
    for an architecture not ranked, cells short); ``diff_vs_best`` and ``p_holm`` of the paired test against the
    best; ``params``, ``macs`` and ``latency_ms`` from ``profiles`` (by label) where known; ``n_runs``.
    Params: the cells' shared config (architecture, variant options, input size, recipe, protocol, ...).
    """
    grouped: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        grouped.setdefault((cell.label, cell.view), []).append(cell)
    found = []
    for board in leaderboards:
        clean = board.clean()
        ranked = [str(label) for label in clean["label"] if board.partial or label not in board.incomplete]
        labels = list(dict.fromkeys([*map(str, clean["label"]), *map(str, board.aggregate["label"])]))
        for label in labels:
            runs = grouped.get((label, board.view), [])
            metrics = _summary_metrics(board, label)
            if label in ranked:
                metrics["rank"] = float(ranked.index(label) + 1)
            profile = profiles.get(label) or {}
            metrics.update({name: profile[name] for name in ("params", "macs", "latency_ms")
                            if profile.get(name) is not None})
            tags = {"cells": board.cells.get(label, ""), "reference": str(label == board.reference).lower(),
                    **({"incomplete": board.incomplete[label]} if label in board.incomplete else {})}
            params: dict[str, Any] = {}
            if runs:
                first = runs[0]
                params = {key: value for key, value in first.to_dict().items() if key not in _PER_CELL_FIELDS}
                params["folds_run"] = sorted({cell.fold for cell in runs})
                params["seeds"] = sorted({cell.seed for cell in runs})
                tags.update({"architecture": first.architecture,
                             **selection_tags([board.view] if first.leaky else [], [board.view])})
            found.append(Summary(label, board.view, params, metrics, tags))
    return found


def _summary_metrics(board: Leaderboard, label: str) -> dict[str, float]:
    rows = board.aggregate[board.aggregate["label"] == label]
    metrics: dict[str, float] = {}
    for _, row in rows.iterrows():
        condition = str(row["condition"])
        if condition == "clean":
            metrics.update({SUMMARY_METRIC: row.get("accuracy_mean"), "accuracy_std": row.get("accuracy_std"),
                            "accuracy_ci_low": row.get("accuracy_ci_low"),
                            "accuracy_ci_high": row.get("accuracy_ci_high"),
                            "balanced_accuracy": row.get("balanced_accuracy_mean"),
                            "balanced_accuracy_std": row.get("balanced_accuracy_std"),
                            "macro_f1": row.get("macro_f1_mean"), "macro_f1_std": row.get("macro_f1_std"),
                            "n_runs": row.get("n_runs")})
        elif condition not in _NOT_A_PERTURBATION:
            metrics[f"accuracy.{condition}"] = row.get("accuracy_mean")
            metrics[f"drop_from_clean.{condition}"] = row.get("drop_from_clean_mean")
    poses = board.per_pose
    if not poses.empty:
        for _, row in poses[poses["label"] == label].iterrows():
            metrics[f"accuracy.pose.{row['pose']}"] = row["accuracy_mean"]
    comparisons = board.comparisons
    if not comparisons.empty and "system" in comparisons.columns:
        for _, row in comparisons[comparisons["system"] == label].iterrows():
            metrics.update({"diff_vs_best": row["diff"], "p_holm": row["p_holm"]})
    return metrics  # NaN and None are kept here and left out when logged


def log_summaries(tracker: Tracker, leaderboards: Sequence[Leaderboard], cells: Sequence[Cell],
                  profiles: Mapping[str, Mapping[str, Any]], suite_tags: Mapping[str, str]) -> list[str]:
    """Log every architecture x view of ``leaderboards`` as a summary run under ``tracker``'s parent run (see
    :func:`summaries`); returns their run ids (none with tracking off)."""
    if not tracker.enabled:
        return []
    suite_level = {key: value for key, value in suite_tags.items() if key != "leaky_note"}
    logged = []
    for summary in summaries(leaderboards, cells, profiles):
        run_id = tracker.log_summary(summary.label, summary.view, summary.params, summary.metrics,
                                     {**suite_level, **summary.tags})
        if run_id is not None:
            logged.append(run_id)
    return logged


CROSS_VIEW = "cross"  # the view of a cross-dataset suite's summary runs: one per architecture, the whole matrix


def log_cross_summaries(tracker: Tracker, metrics: Mapping[str, Mapping[str, float]], params: Mapping[str, Any],
                        suite_tags: Mapping[str, str]) -> list[str]:
    """Log a cross-dataset matrix as one summary run per architecture (view ``cross``): ``metrics`` by label,
    named ``cross/<train>/<test>/accuracy`` and so on (:func:`fbench.score.cross.cross_metrics`); ``params``
    say what was trained on and tested on. Returns the run ids (none with tracking off)."""
    if not tracker.enabled:
        return []
    suite_level = {key: value for key, value in suite_tags.items() if key != "leaky_note"}
    logged = []
    for label, values in metrics.items():
        run_id = tracker.log_summary(label, CROSS_VIEW, params, values, suite_level)
        if run_id is not None:
            logged.append(run_id)
    return logged


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


def leaderboard_view_state() -> str:
    """The leaderboard view's state as the MLflow UI stores it: search facets and chosen columns, as JSON text."""
    columns = [f"metrics.`{name}`" for name in LEADERBOARD_COLUMNS]
    return json.dumps({"searchFilter": summary_filter(), "orderByKey": columns[0], "orderByAsc": False,
                       "selectedColumns": columns}, sort_keys=True)


def leaderboard_fragment(experiment_id: str, saved_view: bool = True) -> str:
    """The MLflow UI's address (the part after ``host:port/``) of experiment ``experiment_id``'s runs table in
    model-training mode, showing its summary runs best accuracy first: the leaderboard.

    With ``saved_view``, the address opens the leaderboard view saved in the experiment (its columns too);
    without, the address carries the filter and the sort itself (the UI's ``searchFilter``, ``orderByKey`` and
    ``orderByAsc``, as MLflow 3's bundle reads them). ``workflowType`` picks "machine learning" over GenAI."""
    if saved_view:
        return f"#/experiments/{experiment_id}/runs?workflowType={UI_WORKFLOW}&viewStateShareKey={LEADERBOARD_VIEW}"
    query = urlencode({"workflowType": UI_WORKFLOW, "searchFilter": summary_filter(),
                       "orderByKey": f"metrics.`{SUMMARY_METRIC}`", "orderByAsc": "false"}, quote_via=quote)
    return f"#/experiments/{experiment_id}/runs?{query}"


def _experiment_fragment(uri: str, experiment: str | None) -> str:
    """The leaderboard's address in ``experiment`` (default: the experiment of the latest suite run in the store);
    the experiment's runs table where it has no summary runs yet; the UI's front page where there is no such
    experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            log.warning("MLflow experiment %r is not in %s; opening the UI's front page", experiment, uri)
            return ""
        experiment_id = found.experiment_id
    else:
        ids = [found.experiment_id for found in client.search_experiments()]
        latest = client.search_runs(ids, filter_string=f"tags.`{KIND_TAG}` = 'suite'", max_results=1,
                                    order_by=["attributes.start_time DESC"]) if ids else []
        if not latest:
            return ""
        experiment_id = latest[0].info.experiment_id
    if not client.search_runs([experiment_id], filter_string=summary_filter(), max_results=1):
        return f"#/experiments/{experiment_id}/runs?workflowType={UI_WORKFLOW}"
    tags = client.get_experiment(experiment_id).tags
    return leaderboard_fragment(experiment_id, saved_view=SAVED_VIEW_PREFIX + LEADERBOARD_VIEW in tags)


def run_ui(uri: str | None = None, host: str = "127.0.0.1", port: int = 5000, experiment: str | None = None) -> int:
    """Serve the MLflow UI for ``uri`` (default as for tracking) until Ctrl-C; returns the server's exit status.

    Prints the address of the leaderboard: the runs table of ``experiment`` (default: the latest suite run's) with
    its summary runs, sorted by accuracy. The server runs in a process group of its own,
    stopped whole (its workers too) when this function leaves: Ctrl-C returns 0; another KeyboardInterrupt (the
    CLI's SIGTERM) is raised again once the server is stopped and its port free.
    """
    resolved = _resolve_uri(uri)
    _check_store(resolved)
    _import_mlflow()
    _check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    fragment = _experiment_fragment(resolved, experiment)
    what = ("the leaderboard: a summary run per architecture x view, best accuracy first\n  "
            if "searchFilter" in fragment or LEADERBOARD_VIEW in fragment else "")
    print(f"MLflow UI for {resolved}\n  {what}http://{shown}:{port}/{fragment}\n  (Ctrl-C to stop)", flush=True)
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
