"""A cell's folder: what a finished cell leaves on disk, written atomically, read back for resume and rescoring.

``<output>/<suite>/<cell key>/`` holds:

| file | what |
|---|---|
| ``config.json`` | the cell's resolved configuration (its hash is the folder name) |
| ``split.json`` | the train/val/test sample ids (``fbench.data.splits.Split``) |
| ``history.json`` | one record per epoch (losses, accuracies, learning rate, seconds) |
| ``predictions.csv.gz`` | per-sample predictions for every condition: the source of truth for every metric |
| ``metrics.json`` | metrics per condition, computed from the predictions |
| ``checkpoint.pt`` | the best weights (by the validation monitor) |
| ``resume.pt`` | while the cell trains: the state after its last finished epoch, so that a killed or preempted
cell continues from there (``fbench.engine.checkpoint.ResumeCheckpoint``); deleted when the cell finishes and never
checksummed |
| ``result.json`` | written last: status (complete or failed), reason, timings, versions, hardware, and the size and
SHA-256 of every other file |
| ``lock.json`` | while a process runs the cell: its pid, host and start time (:class:`CellLock`) |

A cell is finished when ``result.json`` exists; every write goes to a temporary file first and is renamed into
place, so a crash leaves either the old file or the new one, never half of one. What a crash cannot do, a full
disk, a copy or a hand can: :func:`damaged_files` checks a finished cell's files against its record (SHA-256 for
the small files, the size for the checkpoint, which can be hundreds of MB) before it is reused or scored.

Several processes may run one suite at once (on one machine or on nodes that share the folder): a process runs a
cell only while it holds the cell's :class:`CellLock`, so they split the cells between them. The lock is a file
created atomically (a hard link of a complete temporary file, atomic on NFS too; no ``flock``) and refreshed by
its holder every ``HEARTBEAT_SECONDS``; it is stale, and broken by the next process that wants the cell, when its
holder is gone: on the same host, its pid is not alive; on any host, it has not been refreshed for
``STALE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import hashlib
import json
import os
import platform
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fbench.data.files import unwritable, write_atomic
from fbench.errors import FbenchError

CONFIG = "config.json"
SPLIT = "split.json"
HISTORY = "history.json"
PREDICTIONS = "predictions.csv.gz"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
RESUME = "resume.pt"
RESULT = "result.json"
LOCK = "lock.json"

HEARTBEAT_SECONDS = 30.0  # how often a lock's holder refreshes it
STALE_SECONDS = 600.0  # a lock not refreshed for this long is stale on any host (generous: clocks differ)

# The files result.json checksums, in the order they are written.
CHECKED_FILES = (CONFIG, SPLIT, HISTORY, PREDICTIONS, METRICS, CHECKPOINT)

COMPLETE = "complete"
FAILED = "failed"
CORRUPT = "corrupt"  # not a stored status: a finished cell whose files fail their check


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_predictions(path: Path, predictions: pd.DataFrame) -> None:
    # mtime=0: the same predictions give the same bytes
    write_atomic(path, gzip.compress(predictions.to_csv(index=False).encode(), mtime=0))


def read_predictions(path: Path) -> pd.DataFrame:
    """A cell's predictions; a damaged file is an FbenchError naming it."""
    try:
        return pd.read_csv(path, dtype={"sample_id": str, "condition": str, "pose": str, "subject": str},
                           keep_default_na=False)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, csv.Error) as error:
        raise FbenchError(f"{path}: cannot read the predictions ({type(error).__name__}: {error}); the file is "
                          "damaged: `fbench run` trains its cell again") from None


def finished_result(folder: Path) -> dict[str, Any] | None:
    """The cell's result record if it finished (complete or failed), else None (an unreadable record too)."""
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of each of the cell's files that exist (everything but ``result.json``)."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_of(folder / name)}
            for name in CHECKED_FILES if (folder / name).is_file()}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damaged_files(folder: Path) -> list[str]:
    """What is wrong with a finished cell's files, one line per file (empty: nothing, or no record to check).

    ``result.json`` itself unreadable; a file its record lists that is missing, of another size, or (all but the
    checkpoint) of another SHA-256. A complete cell recorded before checksums existed must at least have its
    predictions."""
    path = folder / RESULT
    if not path.is_file():
        return []
    record = finished_result(folder)
    if record is None:
        return [f"{RESULT}: not a readable result record"]
    listed = record.get("files")
    if listed is None:
        complete = record["status"] == COMPLETE
        return [f"{PREDICTIONS}: missing"] if complete and not (folder / PREDICTIONS).is_file() else []
    problems = []
    for name, expected in listed.items():
        file = folder / name
        if not file.is_file():
            problems.append(f"{name}: missing")
        elif file.stat().st_size != expected["bytes"]:
            problems.append(f"{name}: {file.stat().st_size:,} bytes, {expected['bytes']:,} when written "
                            "(truncated or changed)")
        elif name != CHECKPOINT and sha256_of(file) != expected["sha256"]:
            problems.append(f"{name}: its SHA-256 differs from the one recorded (changed since written)")
    return problems


# --------------------------------------------------------------------------------------------------- the lock


@dataclass(frozen=True)
class LockHolder:
    """Who holds a cell's lock: process id, host name, when it took the lock (seconds since the epoch)."""

    pid: int
    host: str
    started: float
    token: str = ""
    namespace: str = ""  # the pid namespace (containers on one host name may not see each other's pids)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {time.strftime('%H:%M:%S', time.localtime(self.started))})"


def read_lock(path: Path) -> LockHolder | None:
    """The holder a lock file names; None when it is missing or unreadable."""
    try:
        record = json.loads(path.read_text())
        return LockHolder(int(record["pid"]), str(record["host"]), float(record["started"]), str(record["token"]),
                          str(record.get("namespace", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_namespace() -> str:
    """This process's pid namespace ('' where the system does not say)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def lock_is_stale(holder: LockHolder | None, age: float, stale_seconds: float = STALE_SECONDS,
                  host: str | None = None) -> bool:
    """Whether a lock ``age`` seconds after its last refresh is stale: not refreshed for ``stale_seconds``, or
    held by a process of this host (``host``, default this machine's name) and pid namespace that is not alive
    (a pid of another namespace, another container, cannot be checked from here). A lock that cannot
    be read yet (being written) is live until it is old."""
    if age > stale_seconds:
        return True
    if holder is None:
        return False
    same_namespace = not holder.namespace or holder.namespace == pid_namespace()
    return holder.host == (host or platform.node()) and same_namespace and not pid_alive(holder.pid)


class CellLock:
    """The lock of one cell's folder (or, by ``name``, of another thing in ``folder``): ``acquire`` takes it (or
    names who holds it), ``release`` gives it back. While held, a daemon thread refreshes the file's time every
    ``heartbeat`` seconds."""

    def __init__(self, folder: Path, heartbeat: float = HEARTBEAT_SECONDS, stale_seconds: float = STALE_SECONDS,
                 name: str = LOCK) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.heartbeat = heartbeat
        self.stale_seconds = stale_seconds
        self.holder: LockHolder | None = None  # this process's record while it holds the lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> LockHolder | None:
        """Take the lock: None when taken, else the live holder that has it (a stale lock is broken first)."""
        if self.holder is not None:
            return None
        for _ in range(5):
            mine = LockHolder(os.getpid(), platform.node(), time.time(), uuid.uuid4().hex, pid_namespace())
            if self._create(mine):
                self.holder = mine
                self._stop.clear()
                self._thread = threading.Thread(target=self._refresh, name=f"fbench-lock-{self.folder.name}",
                                                daemon=True)
                self._thread.start()
                return None
            other = read_lock(self.path)
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if not lock_is_stale(other, age, self.stale_seconds):
                return other or LockHolder(0, "unknown", time.time() - age)
            self._break(other)
        return read_lock(self.path) or LockHolder(0, "unknown", time.time())

    def release(self) -> None:
        """Give the lock back (only when this process still holds it)."""
        if self.holder is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = read_lock(self.path)
        if current is not None and current.token == self.holder.token:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def clear_stale(self) -> None:
        """Remove the lock file when its holder is gone (a process killed between writing the cell's result and
        releasing the lock leaves one beside a finished cell)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return
        holder = read_lock(self.path)
        if lock_is_stale(holder, age, self.stale_seconds):
            self._break(holder)

    def _create(self, mine: LockHolder) -> bool:
        """Create the lock file holding ``mine`` atomically; False when it exists."""
        text = json.dumps({"pid": mine.pid, "host": mine.host, "namespace": mine.namespace,
                           "started": mine.started, "token": mine.token,
                           "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(mine.started))})
        temporary = self.folder / f".{self.path.name}.{mine.token}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text + "\n")
            try:
                os.link(temporary, self.path)  # atomic, fails when the lock exists (NFS too)
                return True
            except FileExistsError:
                return False
            except OSError as error:  # a file system without hard links: an exclusive create instead
                if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                    raise
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text + "\n")
            return True
        except OSError as error:
            raise unwritable(self.path, error) from None
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)

    def _break(self, stale: LockHolder | None) -> None:
        """Remove a stale lock: renamed aside first, so that of two processes breaking it at once only one does;
        a lock that turns out to be another's fresh one is put back."""
        aside = self.folder / f".{self.path.name}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as error:
            raise unwritable(self.path, error) from None
        taken = read_lock(aside)
        if taken is not None and taken.token != (stale.token if stale is not None else None):
            with contextlib.suppress(OSError):  # a fresh lock taken meanwhile: put it back (unless a newer exists)
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def _refresh(self) -> None:
        while not self._stop.wait(self.heartbeat):
            current = read_lock(self.path)
            if self.holder is None or current is None or current.token != self.holder.token:
                return  # broken by another process (this one was taken for dead): nothing to refresh
            try:
                os.utime(self.path)
            except OSError:
                return

    def __enter__(self) -> CellLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
