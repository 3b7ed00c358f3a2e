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
| ``result.json`` | written last: status (complete or failed), reason, timings, versions, hardware, and the size and
SHA-256 of every other file |

A cell is finished when ``result.json`` exists; every write goes to a temporary file first and is renamed into
place, so a crash leaves either the old file or the new one, never half of one. What a crash cannot do, a full
disk, a copy or a hand can: :func:`damaged_files` checks a finished cell's files against its record (SHA-256 for
the small files, the size for the checkpoint, which can be hundreds of MB) before it is reused or scored.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from fbench.data.files import write_atomic
from fbench.errors import FbenchError

CONFIG = "config.json"
SPLIT = "split.json"
HISTORY = "history.json"
PREDICTIONS = "predictions.csv.gz"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"

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


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
