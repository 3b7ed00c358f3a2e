"""Face boxes kept apart from the target size: where each image's face crop is, and how it was found.

Detecting faces is the slow part of building a decode cache, and it does not depend on the size the cache is
built at. The detections of a dataset are kept in ``<cache>/<dataset>-boxes-<crop>-<key>/`` (``boxes.npy``: N x 3
float64 squares x0, y0, side in full-image pixels; ``how.npy``: N int8 indices into ``METHODS``; ``landmarks.npy``:
N x 6 x 2 float64, the landmark model's points in full-image pixels, NaN where it placed none; ``meta.json``),
keyed by the dataset's contents, the crop policy and the landmark model (or its absence), so that a second input
size or channel count crops the same squares without detecting again. The folder is written to a temporary name
and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fbench.data.decode import DETECTED, DLIB, METHODS
from fbench.data.table import BOX_COLUMNS, LANDMARK_COLUMNS, LANDMARKS, SampleTable

BOXES_VERSION = 2  # 2: the landmark model's crops and points (landmarks.npy)


def content_digest(table: SampleTable, header: dict) -> str:
    """A hash of ``header`` and everything a table's images depend on: sample ids, labels, paths, poses, boxes,
    landmarks, the pixel array, and each file's size and modification time."""
    digest = hashlib.sha256()
    digest.update(json.dumps(header, sort_keys=True).encode())
    columns = ["sample_id", "label", "path", "index", "pose"]
    columns += [c for c in BOX_COLUMNS + LANDMARK_COLUMNS if c in table.frame.columns]
    digest.update(pd.util.hash_pandas_object(table.frame[columns], index=False).to_numpy().tobytes())
    if table.pixels is not None:
        digest.update(hashlib.sha256(np.ascontiguousarray(table.pixels).data).digest())
    for path in table.frame["path"]:
        if path:
            stat = (Path(table.root) / path).stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:20]


def boxes_folder(table: SampleTable, crop: str, cache_dir: Path, model: str | None) -> Path:
    """Where the face boxes of ``table`` under ``crop``, found with the landmark model ``model`` (None: Haar
    only), are kept."""
    header = {"version": BOXES_VERSION, "kind": "boxes", "dataset": table.dataset,
              "root": str(Path(table.root).resolve()), "crop": crop, "rows": len(table), "landmark_model": model}
    return cache_dir / f"{table.dataset}-boxes-{crop}-{content_digest(table, header)}"


def method_counts(how: Iterable[str]) -> dict[str, int]:
    """How many crops each method made, in ``METHODS`` order, leaving out the methods that made none."""
    counts = Counter(how)
    return {method: int(counts[method]) for method in METHODS if counts[method]}


def detection_text(counts: dict[str, int]) -> str:
    """``dlib 300, frontal 0, profile 200, fallback 30`` (the Haar detectors' methods always named, even at 0)."""
    named = dict(counts)
    if any(method in named for method in (DLIB, *DETECTED)):
        first = {DLIB: named[DLIB]} if DLIB in named else {}
        named = first | {method: named.get(method, 0) for method in DETECTED} | named
    return ", ".join(f"{method} {n:,}" for method, n in named.items())


@dataclass(frozen=True)
class FaceBoxes:
    """The crop square of every row (N x 3: x0, y0, side in full-image pixels), how each was found, and the
    landmark model's points (N x 6 x 2 full-image pixels, NaN where it placed none)."""

    squares: np.ndarray
    how: list[str]
    folder: Path
    landmarks: np.ndarray

    @property
    def counts(self) -> dict[str, int]:
        return method_counts(self.how)


def load_boxes(folder: Path, rows: int) -> FaceBoxes | None:
    """The boxes kept in ``folder`` for a table of ``rows`` rows, or None when absent, unreadable or not
    matching."""
    try:
        squares = np.load(folder / "boxes.npy")
        codes = np.load(folder / "how.npy")
        landmarks = np.load(folder / "landmarks.npy")
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError, EOFError):
        return None
    if squares.shape != (rows, 3) or codes.shape != (rows,) or meta.get("count") != rows \
            or landmarks.shape != (rows, len(LANDMARKS), 2) \
            or not np.isfinite(squares).all() or codes.min(initial=0) < 0 or codes.max(initial=0) >= len(METHODS):
        return None
    return FaceBoxes(squares, [METHODS[int(c)] for c in codes], folder, landmarks)


def save_boxes(folder: Path, squares: np.ndarray, how: list[str], landmarks: np.ndarray, meta: dict) -> FaceBoxes:
    """Write the boxes to ``folder`` (through a temporary folder renamed into place; another process that
    finished first wins) and return them."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.save(staging / "boxes.npy", np.asarray(squares, np.float64))
        np.save(staging / "how.npy", np.array([METHODS.index(h) for h in how], np.int8))
        np.save(staging / "landmarks.npy", np.asarray(landmarks, np.float64))
        record = {**meta, "version": BOXES_VERSION, "count": len(how), "methods": list(METHODS),
                  "detections": method_counts(how)}
        (staging / "meta.json").write_text(json.dumps(record, indent=2))
        try:
            os.replace(staging, folder)
        except OSError:  # another process wrote the same boxes first: theirs are as good
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return FaceBoxes(np.asarray(squares, np.float64), list(how), folder, np.asarray(landmarks, np.float64))
