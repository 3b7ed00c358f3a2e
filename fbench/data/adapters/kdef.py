"""KDEF (Karolinska Directed Emotional Faces): 70 subjects x 7 expressions x 5 poses x 2 sessions, 562 x 762 JPGs.

File names carry everything: ``AF01AFFL.JPG`` = session A, female, subject 01, expression AF (afraid), pose FL
(full left). KDEF has no official split, so ``split`` is "" and protocols build subject-disjoint folds.

fbench's synthetic KDEF-like set adds ``fbench_manifest.csv`` (face boxes and landmarks per file, merged here so
the crop policy becomes "box") and ``fbench_synthetic.json`` (``{"synthetic": true, ...}``, which marks the table
synthetic).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from fbench.data.adapter import OnError
from fbench.data.adapters._common import BuiltinAdapter, Problems, finish, make_frame, relative_posix
from fbench.data.table import BOX_COLUMNS, KDEF_YAW, LABEL_INDEX, LANDMARK_COLUMNS, SampleTable
from fbench.errors import FbenchError
from fbench.registry import register_dataset

FILE_NAME = re.compile(r"^([AB])([FM])(\d\d)(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)\.(JPG|jpg)$")

EXPRESSIONS = {
    "AF": LABEL_INDEX["fear"],  # "afraid"
    "AN": LABEL_INDEX["anger"],
    "DI": LABEL_INDEX["disgust"],
    "HA": LABEL_INDEX["happy"],
    "NE": LABEL_INDEX["neutral"],
    "SA": LABEL_INDEX["sad"],
    "SU": LABEL_INDEX["surprise"],
}

MANIFEST = "fbench_manifest.csv"
SYNTHETIC_INFO = "fbench_synthetic.json"
BAD_NAME = "file name not in KDEF naming (e.g. AF01AFS.JPG)"


@register_dataset("kdef")
class KdefAdapter(BuiltinAdapter):
    name = "kdef"
    description = "KDEF: 70 subjects, 7 expressions, 5 head poses (-90..90 deg yaw), 2 sessions; no official split"
    default_crop = "haar"
    expected_layout = ("a folder holding the KDEF JPGs at any depth, named like AF01AFS.JPG "
                       "(session A/B, sex F/M, subject 01-35, expression AF/AN/DI/HA/NE/SA/SU, pose FL/HL/S/HR/FR), "
                       "e.g. KDEF/AF01/AF01AFS.JPG")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        problems = Problems(self.name, on_error)
        files = sorted(p for p in root.rglob("*")
                       if p.suffix in (".jpg", ".JPG") and not p.name.startswith(".") and p.is_file())
        if not files:
            raise self.root_error(f"no .JPG files under {str(root)!r}")
        frame = self._frame(root, files, problems)
        meta: dict[str, object] = {}
        if (root / MANIFEST).is_file():
            frame = merge_manifest(frame, root / MANIFEST)
            if all(c in frame.columns for c in BOX_COLUMNS):
                meta["crop"] = "box"
        synthetic = False
        if (root / SYNTHETIC_INFO).is_file():
            info = read_synthetic_info(root / SYNTHETIC_INFO)
            synthetic = bool(info.get("synthetic", False))
            if synthetic:
                meta["synthetic_info"] = info
        return finish(self, root, frame, problems, num_classes=7, synthetic=synthetic, meta=meta)

    def _frame(self, root: Path, files: list[Path], problems: Problems) -> pd.DataFrame:
        columns: dict[str, list] = {c: [] for c in ("sample_id", "path", "label", "subject", "session", "pose", "yaw")}
        for file in files:
            relative = relative_posix(file, root)
            match = FILE_NAME.match(file.name)
            if match is None:
                problems.error(BAD_NAME, relative, hint="Point --data kdef=PATH at a folder of KDEF photos only.")
                continue
            session, sex, number, expression, pose, _ = match.groups()
            columns["sample_id"].append(relative)
            columns["path"].append(relative)
            columns["label"].append(EXPRESSIONS[expression])
            columns["subject"].append(sex + number)
            columns["session"].append(session)
            columns["pose"].append(pose)
            columns["yaw"].append(KDEF_YAW[pose])
        return make_frame(columns)


def merge_manifest(frame: pd.DataFrame, manifest: Path) -> pd.DataFrame:
    """Add the manifest's face box and landmark columns, matched on the relative path (NaN where unmatched)."""
    try:
        extra = pd.read_csv(manifest)
    except (OSError, ValueError) as error:
        raise FbenchError(f"cannot read {str(manifest)!r}: {error}; regenerate it or remove it") from None
    if "path" not in extra.columns:
        raise FbenchError(f"{str(manifest)!r} has no 'path' column; regenerate it or remove it")
    wanted = [c for c in BOX_COLUMNS + LANDMARK_COLUMNS if c in extra.columns]
    extra = extra[["path", *wanted]].copy()
    extra["path"] = extra["path"].astype(str).str.replace("\\", "/", regex=False)
    extra = extra.drop_duplicates("path")
    merged = frame.merge(extra, on="path", how="left")
    for column in wanted:
        merged[column] = merged[column].astype(np.float64)
    return merged


def read_synthetic_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FbenchError(f"cannot read {str(path)!r} as JSON: {error}; regenerate it or remove it") from None
    if not isinstance(info, dict):
        raise FbenchError(f"{str(path)!r} must hold a JSON object such as {{\"synthetic\": true}}")
    return info
