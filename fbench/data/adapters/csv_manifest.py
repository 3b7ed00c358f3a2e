"""A CSV manifest: the way in for any dataset that no other adapter reads.

The root is the CSV file itself or a folder holding ``manifest.csv``. Required columns: ``path`` (relative to the
CSV's folder, or absolute) and ``label`` (an expression name or synonym, see ``fbench.data.labels``). Optional:
``subject``, ``session``, ``pose``, ``yaw`` (degrees), ``split`` (train / val / test, or empty; valid and validation
mean val), and any ``cond_*`` (true/false, 1/0, yes/no), ``box_*`` and ``lm_*`` (pixels) columns. Other columns are
ignored. num_classes is 8 when some label is contempt, else 7.
"""

from __future__ import annotations

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
from fbench.data.labels import accepted_names, find_label
from fbench.data.table import LABEL_INDEX, SampleTable
from fbench.errors import FbenchError
from fbench.registry import register_dataset

MANIFEST = "manifest.csv"
SPLITS = {"": "", "train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"", "0", "false", "no", "n", "f", "nan"}

BAD_SPLIT = "unknown split (expected train, val, test or empty)"
BAD_CONDITION = "condition value not true/false"
DUPLICATE = "duplicate path"


@register_dataset("csv")
class CsvManifestAdapter(BuiltinAdapter):
    name = "csv"
    description = "A CSV manifest (path, label, optional subject/pose/yaw/split/cond_*/box_*/lm_* columns)"
    default_crop = "none"
    expected_layout = (f"a .csv file, or <root>/{MANIFEST}, with columns path,label (label: an expression name such "
                       "as happy or angry) and optional subject, session, pose, yaw, split, cond_*, box_*, lm_*; "
                       "relative paths resolve against the CSV's folder")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        csv_path = self.find_manifest(root)
        folder = csv_path.parent
        problems = Problems(self.name, on_error)
        table = read_csv_strings(csv_path)
        table.columns = [str(c).strip() for c in table.columns]
        missing = [c for c in ("path", "label") if c not in table.columns]
        if missing:
            raise FbenchError(f"dataset {self.name!r}: {str(csv_path)!r} lacks column(s) {missing} "
                              f"(has {list(table.columns)}). Expected: {self.expected_layout}")
        where = [f"{csv_path.name}:{i + 2}" for i in range(len(table))]
        keep = self.check_rows(table, where, problems)
        table = table.loc[keep].reset_index(drop=True)
        where = [w for w, k in zip(where, keep) if k]
        frame = self.frame(table)
        frame = drop_bad_images(frame, folder, problems,
                                where=[f"{w} ({p})" for w, p in zip(where, frame["path"])])
        num_classes = 8 if (frame["label"] == LABEL_INDEX["contempt"]).any() else 7
        return finish(self, folder, frame, problems, num_classes=num_classes, meta={"manifest": csv_path.name})

    def find_manifest(self, root: Path | str | None) -> Path:
        if root is not None and str(root).lower().endswith(".csv"):
            path = Path(root).expanduser()
            if not path.is_file():
                raise self.root_error(f"{str(path)!r} does not exist")
            return path
        return self.require_file(self.require_dir(root), MANIFEST)

    def check_rows(self, table: pd.DataFrame, where: list[str], problems: Problems) -> np.ndarray:
        """Rows with a known label, split and condition values and a path not seen before."""
        keep = np.ones(len(table), dtype=bool)
        conditions = [c for c in table.columns if c.startswith("cond_")]
        seen: set[str] = set()
        hint = f"Accepted label names: {accepted_names()}."
        for i, row in enumerate(table.to_dict("records")):
            path = row["path"].strip().replace("\\", "/")
            if find_label(row["label"]) is None:
                problems.error(UNKNOWN_LABEL, f"{where[i]} ({row['label']!r})", hint=hint)
            elif row.get("split", "").strip().lower() not in SPLITS:
                problems.error(BAD_SPLIT, f"{where[i]} ({row['split']!r})")
            elif any(row[c].strip().lower() not in TRUE | FALSE for c in conditions):
                problems.error(BAD_CONDITION, where[i])
            elif not path or path in seen:
                problems.error(DUPLICATE if path else "empty path", where[i])
            else:
                seen.add(path)
                continue
            keep[i] = False
        return keep

    def frame(self, table: pd.DataFrame) -> pd.DataFrame:
        paths = table["path"].str.strip().str.replace("\\", "/", regex=False).tolist()
        columns: dict[str, object] = {
            "sample_id": paths, "path": paths,
            "label": [find_label(v) for v in table["label"]],
        }
        for column in ("subject", "session", "pose"):
            if column in table.columns:
                columns[column] = table[column].str.strip().tolist()
        if "yaw" in table.columns:
            columns["yaw"] = pd.to_numeric(table["yaw"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        if "split" in table.columns:
            columns["split"] = [SPLITS[v.strip().lower()] for v in table["split"]]
        for column in table.columns:
            if column.startswith("cond_"):
                columns[column] = table[column].str.strip().str.lower().isin(TRUE).to_numpy()
            elif column.startswith(("box_", "lm_")):
                columns[column] = pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        return make_frame(columns)
