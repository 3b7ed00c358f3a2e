"""The sample table: what every dataset adapter produces, one row per image.

Columns (a pandas DataFrame):

| column | type | meaning |
|---|---|---|
| ``sample_id`` | str | unique within the dataset, stable across runs (the relative path, or ``name:row``) |
| ``path`` | str | the image file, relative to the dataset root; empty for array datasets |
| ``index`` | int | row in ``SampleTable.pixels`` for array datasets (FER-2013), else -1 |
| ``label`` | int | index in ``CANONICAL_LABELS`` |
| ``subject`` | str | subject id ("" when the dataset has none) |
| ``pose`` | str | pose code ("FL", "HL", "S", "HR", "FR" for KDEF; "" when unknown) |
| ``yaw`` | float | head yaw in degrees (NaN when unknown); negative = the subject turned to their right |
| ``split`` | str | official split ("train", "val", "test", "" when the dataset has none) |

Optional columns: ``session``; condition tags ``cond_<name>`` (bool, e.g. ``cond_occlusion``,
``cond_pose_gt30``); a face box ``box_x0, box_y0, box_x1, box_y1`` and landmarks ``lm_<point>_x, lm_<point>_y``
for ``LANDMARKS``, in pixels of the original image, image-left first (NaN when unknown).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fbench.errors import FbenchError

CANONICAL_LABELS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
LABEL_INDEX = {name: i for i, name in enumerate(CANONICAL_LABELS)}

REQUIRED_COLUMNS = ("sample_id", "path", "index", "label", "subject", "pose", "yaw", "split")
BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
# Image-left and image-right: in a frontal view, eye_l is the eye with the smaller x.
LANDMARKS = ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r", "chin")
LANDMARK_COLUMNS = tuple(f"lm_{point}_{axis}" for point in LANDMARKS for axis in ("x", "y"))

KDEF_POSES = ("FL", "HL", "S", "HR", "FR")
KDEF_YAW = {"FL": -90.0, "HL": -45.0, "S": 0.0, "HR": 45.0, "FR": 90.0}


@dataclass
class LoadReport:
    """What an adapter skipped, by reason, with example paths."""

    skipped: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.skipped.setdefault(reason, []).append(where)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self, limit: int = 3) -> str:
        parts = []
        for reason, where in self.skipped.items():
            examples = ", ".join(where[:limit]) + (", ..." if len(where) > limit else "")
            parts.append(f"{len(where)} {reason} ({examples})")
        return "; ".join(parts)


@dataclass
class SampleTable:
    """A dataset as one table, with where it lives and what was skipped while reading it."""

    dataset: str
    root: str
    frame: pd.DataFrame
    num_classes: int
    synthetic: bool = False
    aligned: bool = False  # faces already cropped and aligned (RAF-DB aligned, FER-2013, AffectNet crops)
    pixels: np.ndarray | None = None  # N x H x W (x C) uint8, for array datasets
    report: LoadReport = field(default_factory=LoadReport)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in self.frame.columns]
        if missing:
            raise FbenchError(f"dataset {self.dataset!r}: sample table lacks columns {missing}")
        if self.frame["sample_id"].duplicated().any():
            dupes = self.frame.loc[self.frame["sample_id"].duplicated(), "sample_id"].head(3).tolist()
            raise FbenchError(f"dataset {self.dataset!r}: duplicate sample ids, e.g. {dupes}")
        labels = self.frame["label"]
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise FbenchError(f"dataset {self.dataset!r}: labels outside 0..{self.num_classes - 1}")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def label_names(self) -> tuple[str, ...]:
        return CANONICAL_LABELS[: self.num_classes]

    @property
    def has_landmarks(self) -> bool:
        return all(c in self.frame.columns for c in LANDMARK_COLUMNS)

    def fingerprint(self) -> str:
        """A hash of the dataset's content that does not depend on where it lives: the dataset's name, every
        sample's id, label, path (relative), pose, split and tags, and each file's size (or the pixel array).

        Cell keys use it instead of the dataset's path, so a copied project, or a node that mounts the data
        elsewhere, finds its finished cells. Sizes, not modification times: ``cp -r`` keeps the one, not the
        other."""
        digest = hashlib.sha256(json.dumps([self.dataset, self.num_classes, len(self)]).encode())
        columns = ["sample_id", "label", "path", "index", "pose", "split"]
        columns += sorted(c for c in self.frame.columns if c.startswith("cond_"))
        digest.update(pd.util.hash_pandas_object(self.frame[columns], index=False).to_numpy().tobytes())
        if self.pixels is not None:
            digest.update(hashlib.sha256(np.ascontiguousarray(self.pixels).data).digest())
        root = Path(self.root)
        for path in self.frame["path"]:
            if path:
                try:
                    size = (root / path).stat().st_size
                except OSError as error:
                    raise FbenchError(f"{root / path}: {error.strerror or error}; the dataset changed while it was "
                                      "read: run again") from None
                digest.update(f"{size};".encode())
        return digest.hexdigest()[:20]

    def subset(self, mask: Any) -> SampleTable:
        """The rows where ``mask`` holds, keeping pixels, report and metadata."""
        frame = self.frame.loc[mask].reset_index(drop=True)
        return SampleTable(self.dataset, self.root, frame, self.num_classes, self.synthetic, self.aligned,
                           self.pixels, self.report, dict(self.meta))

