"""AffectNet (manually annotated part): in-the-wild faces with a face box, 68 landmarks and 8 expressions.

``<root>/training.csv`` (-> split "train") and ``<root>/validation.csv`` (-> split "test": the official validation
set is the test set of the usual protocol) have columns subDirectory_filePath, face_x, face_y, face_width,
face_height, facial_landmarks, expression, valence, arousal. Images live under
``<root>/Manually_Annotated_Images/`` (or directly under ``<root>``) at ``subDirectory_filePath``.

expression: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt; 8 None, 9 Uncertain and
10 Non-Face are excluded (listed in the report as "excluded: ...", never raised). Landmarks
"x0;y0;x1;y1;..." (68 iBUG points) become our six: eye centres (mean of points 36-41 and 42-47), nose tip (30),
mouth corners (48, 54) and chin (8), with the pairs ordered image-left first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fbench.data.adapter import OnError
from fbench.data.adapters._common import (
    UNKNOWN_LABEL,
    BuiltinAdapter,
    Problems,
    drop_bad_images,
    finish,
    make_frame,
    read_csv_strings,
)
from fbench.data.table import LABEL_INDEX, LANDMARK_COLUMNS, SampleTable
from fbench.registry import register_dataset

MANIFESTS = {"training.csv": "train", "validation.csv": "test"}
IMAGE_DIR = "Manually_Annotated_Images"

LABELS = {
    0: LABEL_INDEX["neutral"],
    1: LABEL_INDEX["happy"],
    2: LABEL_INDEX["sad"],
    3: LABEL_INDEX["surprise"],
    4: LABEL_INDEX["fear"],
    5: LABEL_INDEX["disgust"],
    6: LABEL_INDEX["anger"],
    7: LABEL_INDEX["contempt"],
}
EXCLUDED = {8: "None (8)", 9: "Uncertain (9)", 10: "Non-Face (10)"}
REQUIRED = ("subDirectory_filePath", "expression")

# 68-point (iBUG) indices averaged into each of our landmarks, before image-left/right ordering.
POINTS = {"eye_a": range(36, 42), "eye_b": range(42, 48), "nose": (30,), "mouth_a": (48,), "mouth_b": (54,),
          "chin": (8,)}


@register_dataset("affectnet")
class AffectnetAdapter(BuiltinAdapter):
    name = "affectnet"
    description = "AffectNet (manually annotated): in-the-wild faces, 8 expressions, face boxes and 68 landmarks"
    default_crop = "box"
    expected_layout = ("<root>/training.csv and/or <root>/validation.csv (AffectNet's manifests) with images at "
                       f"<root>/{IMAGE_DIR}/<subDirectory_filePath>")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        present = {name: split for name, split in MANIFESTS.items() if (root / name).is_file()}
        if not present:
            raise self.root_error(f"neither training.csv nor validation.csv is in {str(root)!r}")
        prefix = f"{IMAGE_DIR}/" if (root / IMAGE_DIR).is_dir() else ""
        problems = Problems(self.name, on_error)
        frames, where = [], []
        for name, split in present.items():
            frame, names = self._read_manifest(root / name, split, prefix, problems)
            frames.append(frame)
            where.extend(names)
        frame = pd.concat(frames, ignore_index=True)
        frame = drop_bad_images(frame, root, problems, where=where)
        meta = {"manifests": sorted(present), "image_dir": prefix.rstrip("/") or "."}
        missing = sorted(set(MANIFESTS) - set(present))
        if missing:
            meta["manifests_missing"] = missing
        return finish(self, root, frame, problems, num_classes=8, meta=meta)

    def _read_manifest(self, path: Path, split: str, prefix: str, problems: Problems
                       ) -> tuple[pd.DataFrame, list[str]]:
        """One manifest's usable rows, and a "file:line (path)" name for each for later messages."""
        table = read_csv_strings(path)
        missing = [c for c in REQUIRED if c not in table.columns]
        if missing:
            raise self.root_error(f"{str(path)!r} lacks column(s) {missing} (has {list(table.columns)})")
        lines = np.arange(len(table)) + 2  # header is line 1
        code = pd.to_numeric(table["expression"].str.strip(), errors="coerce")
        keep = code.isin(list(LABELS)).to_numpy()
        for i in np.flatnonzero(~keep):
            where = f"{path.name}:{lines[i]}"
            if code.iloc[i] in EXCLUDED:
                problems.exclude(EXCLUDED[int(code.iloc[i])], where)
            else:
                problems.error(UNKNOWN_LABEL, f"{where} (expression {table['expression'].iloc[i]!r}; "
                                              "AffectNet uses 0..10)")
        table, code, lines = table.loc[keep].reset_index(drop=True), code[keep].astype(int), lines[keep]
        paths = (prefix + table["subDirectory_filePath"].str.strip().str.replace("\\", "/", regex=False)
                 .str.lstrip("/")).tolist()
        columns: dict[str, object] = {
            "sample_id": paths, "path": paths, "label": code.map(LABELS).to_numpy(), "split": [split] * len(paths),
            "valence": numeric(table, "valence"), "arousal": numeric(table, "arousal"),
        }
        columns.update(face_box(table))
        columns.update(landmarks_from_68(table.get("facial_landmarks", pd.Series([""] * len(table)))))
        names = [f"{path.name}:{line} ({p})" for line, p in zip(lines, paths)]
        return make_frame(columns), names


def numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)


def face_box(table: pd.DataFrame) -> dict[str, np.ndarray]:
    x, y = numeric(table, "face_x"), numeric(table, "face_y")
    w, h = numeric(table, "face_width"), numeric(table, "face_height")
    return {"box_x0": x, "box_y0": y, "box_x1": x + w, "box_y1": y + h}


def parse_points(text: str) -> np.ndarray | None:
    """"x0;y0;...;x67;y67" -> 68 x 2, or None when empty or malformed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(text, dtype=np.float64, sep=";")
    except (ValueError, DeprecationWarning):
        return None
    return values.reshape(68, 2) if values.size == 136 else None


def landmarks_from_68(strings: pd.Series) -> dict[str, np.ndarray]:
    """Our six landmarks (``LANDMARK_COLUMNS``) from 68-point strings; NaN where a string is unusable."""
    points = np.full((len(strings), 68, 2), np.nan)
    for i, text in enumerate(strings.tolist()):
        parsed = parse_points(str(text).strip()) if text else None
        if parsed is not None:
            points[i] = parsed
    centre = {name: points[:, list(idx)].mean(axis=1) for name, idx in POINTS.items()}
    eye_l, eye_r = image_left_first(centre["eye_a"], centre["eye_b"])
    mouth_l, mouth_r = image_left_first(centre["mouth_a"], centre["mouth_b"])
    ours = {"eye_l": eye_l, "eye_r": eye_r, "nose": centre["nose"], "mouth_l": mouth_l, "mouth_r": mouth_r,
            "chin": centre["chin"]}
    return {column: ours[column[3:-2]][:, 0 if column.endswith("_x") else 1] for column in LANDMARK_COLUMNS}


def image_left_first(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the point with the smaller x first (iBUG's 36-41 is the subject's right eye, image-left when
    frontal, but profile faces and mirrored images can swap them)."""
    swap = (b[:, 0] < a[:, 0])[:, None]
    return np.where(swap, b, a), np.where(swap, a, b)
