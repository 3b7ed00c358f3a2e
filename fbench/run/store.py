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
| ``result.json`` | written last: status (complete or failed), reason, timings, versions, hardware |

A cell is finished when ``result.json`` exists; every write goes to a temporary file first and is renamed into
place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd

from fbench.data.files import write_atomic

CONFIG = "config.json"
SPLIT = "split.json"
HISTORY = "history.json"
PREDICTIONS = "predictions.csv.gz"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"

COMPLETE = "complete"
FAILED = "failed"


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_predictions(path: Path, predictions: pd.DataFrame) -> None:
    # mtime=0: the same predictions give the same bytes
    write_atomic(path, gzip.compress(predictions.to_csv(index=False).encode(), mtime=0))


def read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"sample_id": str, "condition": str, "pose": str, "subject": str},
                       keep_default_na=False)


def finished_result(folder: Path) -> dict[str, Any] | None:
    """The cell's result record if it finished (complete or failed), else None."""
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
