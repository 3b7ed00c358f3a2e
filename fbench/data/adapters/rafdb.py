"""RAF-DB basic: 15,339 in-the-wild faces (12,271 train, 3,068 test), 7 expressions, aligned 100 x 100 crops.

Labels come from ``EmoLabel/list_patition_label.txt`` (the distribution's spelling), one ``<image> <label>`` per
line; the split is the name's prefix (``train_00001.jpg``, ``test_0001.jpg``); images are the aligned crops
``Image/aligned/<stem>_aligned.jpg``.

Challenge conditions (optional): the test-image lists published with RAN (Wang et al., "Region Attention Networks
for Pose and Occlusion Robust Facial Expression Recognition", github.com/kaiwang960112/Challenge-condition-FER-dataset,
folder ``RAF_DB_dir``), copied by the user into ``<root>/conditions/``:

- ``rafdb_occlusion_list.txt`` -> ``cond_occlusion`` (lines like ``test_0003_aligned 3 4``)
- ``val_raf_db_list.txt``      -> ``cond_pose_gt30`` (lines like ``0/test_0004_aligned.jpg``)
- ``val_raf_db_list_45.txt``   -> ``cond_pose_gt45``

(``occlusion.txt``, ``pose_30.txt``, ``pose_45.txt`` and the other names in ``CONDITION_FILES`` are accepted too.)
A list holds test image names, one per line; folders, extensions, the ``_aligned`` suffix and extra columns are
ignored. Missing lists leave their column all False and are noted in ``table.meta["conditions_missing"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fbench.data.adapter import OnError
from fbench.data.adapters._common import UNKNOWN_LABEL, BuiltinAdapter, Problems, drop_bad_images, finish, make_frame
from fbench.data.table import LABEL_INDEX, SampleTable
from fbench.registry import register_dataset

LABEL_FILE = "EmoLabel/list_patition_label.txt"
ALIGNED_DIR = "Image/aligned"
CONDITIONS_DIR = "conditions"

LABELS = {
    1: LABEL_INDEX["surprise"],
    2: LABEL_INDEX["fear"],
    3: LABEL_INDEX["disgust"],
    4: LABEL_INDEX["happy"],
    5: LABEL_INDEX["sad"],
    6: LABEL_INDEX["anger"],
    7: LABEL_INDEX["neutral"],
}

# column -> accepted file names under <root>/conditions/, the RAN repository's own name first.
CONDITION_FILES = {
    "cond_occlusion": ("rafdb_occlusion_list.txt", "occlusion_list.txt", "occlusion.txt"),
    "cond_pose_gt30": ("val_raf_db_list.txt", "rafdb_pose_30_list.txt", "pose_30_list.txt", "pose_30.txt",
                       "pose_gt30.txt"),
    "cond_pose_gt45": ("val_raf_db_list_45.txt", "rafdb_pose_45_list.txt", "pose_45_list.txt", "pose_45.txt",
                       "pose_gt45.txt"),
}

BAD_LINE = "malformed label line"


@register_dataset("rafdb")
class RafdbAdapter(BuiltinAdapter):
    name = "rafdb"
    description = ("RAF-DB basic: in-the-wild faces, 7 expressions, aligned crops, official train/test split; "
                   "optional RAN occlusion / pose>30 / pose>45 test lists")
    default_crop = "none"
    expected_layout = (f"<root>/{LABEL_FILE} ('train_00001.jpg 5' per line) and <root>/{ALIGNED_DIR}/"
                       "train_00001_aligned.jpg ...; optional RAN condition lists in <root>/conditions/: "
                       + ", ".join(names[0] for names in CONDITION_FILES.values()))

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        label_file = self.require_file(root, LABEL_FILE)
        problems = Problems(self.name, on_error)
        columns: dict[str, list] = {"sample_id": [], "path": [], "label": [], "split": [], "stem": []}
        for line_number, line in enumerate(label_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parsed = parse_label_line(line)
            where = f"{LABEL_FILE}:{line_number}"
            if parsed is None:
                problems.error(BAD_LINE, f"{where} ({line.strip()!r})")
                continue
            stem, code = parsed
            if code not in LABELS:
                problems.error(UNKNOWN_LABEL, f"{where} (label {code}; RAF-DB labels are 1..7)")
                continue
            path = f"{ALIGNED_DIR}/{stem}_aligned.jpg"
            columns["sample_id"].append(path)
            columns["path"].append(path)
            columns["label"].append(LABELS[code])
            columns["split"].append(stem.split("_", 1)[0])
            columns["stem"].append(stem)
        frame = drop_bad_images(make_frame(columns), root, problems)
        meta: dict[str, object] = {}
        for column, found in condition_columns(root, frame["stem"].tolist(), meta).items():
            frame[column] = found
        frame = frame.drop(columns="stem")
        return finish(self, root, frame, problems, num_classes=7, aligned=True, meta=meta)


def parse_label_line(line: str) -> tuple[str, int] | None:
    """``"train_00001.jpg 5"`` -> ``("train_00001", 5)``; None when the line does not have that form."""
    parts = line.split()
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        return None
    stem = Path(parts[0]).stem
    if stem.split("_", 1)[0] not in ("train", "test"):
        return None
    return stem, int(parts[1])


def list_key(entry: str) -> str:
    """A condition-list entry (``0/test_0004_aligned.jpg``, ``test_0003_aligned``) -> ``test_0004``."""
    name = entry.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem.removesuffix("_aligned")


def read_condition_list(path: Path) -> set[str]:
    return {list_key(line.split()[0]) for line in path.read_text().splitlines() if line.strip()}


def condition_columns(root: Path, stems: list[str], meta: dict[str, object]) -> dict[str, np.ndarray]:
    """One bool column per challenge condition; fills ``meta`` with the files used and the lists missing."""
    folder = root / CONDITIONS_DIR
    columns: dict[str, np.ndarray] = {}
    used: dict[str, str] = {}
    missing: list[str] = []
    unmatched: dict[str, int] = {}
    for column, names in CONDITION_FILES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            columns[column] = np.zeros(len(stems), dtype=bool)
            missing.append(column)
            continue
        keys = read_condition_list(path)
        columns[column] = np.array([stem in keys for stem in stems], dtype=bool)
        used[column] = path.relative_to(root).as_posix()
        unmatched[column] = len(keys - set(stems))
    meta["condition_lists"] = used
    if missing:
        meta["conditions_missing"] = missing
        meta["conditions_note"] = (
            f"condition lists missing for {', '.join(missing)} (all False). Copy the RAN lists from "
            "github.com/kaiwang960112/Challenge-condition-FER-dataset/RAF_DB_dir into "
            f"{str(folder)!r}: " + "; ".join(f"{c}: {CONDITION_FILES[c][0]}" for c in missing))
    if any(unmatched.values()):
        meta["condition_entries_unmatched"] = {c: n for c, n in unmatched.items() if n}
    return columns
