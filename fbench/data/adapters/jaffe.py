"""JAFFE (Japanese Female Facial Expression): 10 subjects x 7 expressions, 213 grayscale 256 x 256 TIFFs.

File names carry everything: ``KA.AN1.39.tiff`` = subject KA (initials), expression AN (anger), take 1, image 39.
Every photograph is frontal (pose "S", yaw 0, as KDEF marks straight-ahead photographs). JAFFE has no official
split, so ``split`` is "" and protocols build subject-disjoint folds. Other files (README, .DS_Store) are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from fbench.data.adapter import OnError
from fbench.data.adapters._common import FRONTAL_POSE, BuiltinAdapter, Problems, finish, make_frame, relative_posix
from fbench.data.table import KDEF_YAW, LABEL_INDEX, SampleTable
from fbench.registry import register_dataset

FILE_NAME = re.compile(r"^([A-Z]{2})\.(AN|DI|FE|HA|NE|SA|SU)(\d+)\.(\d+)\.tiff?$", re.IGNORECASE)
SUFFIXES = (".tif", ".tiff")

EXPRESSIONS = {
    "AN": LABEL_INDEX["anger"],
    "DI": LABEL_INDEX["disgust"],
    "FE": LABEL_INDEX["fear"],
    "HA": LABEL_INDEX["happy"],
    "NE": LABEL_INDEX["neutral"],
    "SA": LABEL_INDEX["sad"],
    "SU": LABEL_INDEX["surprise"],
}

BAD_NAME = "file name not in JAFFE naming (e.g. KA.AN1.39.tiff)"


@register_dataset("jaffe")
class JaffeAdapter(BuiltinAdapter):
    name = "jaffe"
    description = "JAFFE: 10 Japanese female subjects, 7 expressions, 213 frontal grayscale TIFFs; no official split"
    default_crop = "haar"
    expected_layout = ("a folder holding the JAFFE TIFFs at any depth, named like KA.AN1.39.tiff (subject initials, "
                       "expression AN/DI/FE/HA/NE/SA/SU with a take number, image number), e.g. jaffe/KA.AN1.39.tiff")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        problems = Problems(self.name, on_error)
        files = sorted(p for p in root.rglob("*")
                       if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file())
        if not files:
            raise self.root_error(f"no .tiff files under {str(root)!r}")
        columns: dict[str, list] = {c: [] for c in ("sample_id", "path", "label", "subject", "pose", "yaw")}
        for file in files:
            relative = relative_posix(file, root)
            match = FILE_NAME.match(file.name)
            if match is None:
                problems.error(BAD_NAME, relative, hint="Point --data jaffe=PATH at a folder of JAFFE images only.")
                continue
            subject, expression = match.group(1).upper(), match.group(2).upper()
            columns["sample_id"].append(relative)
            columns["path"].append(relative)
            columns["label"].append(EXPRESSIONS[expression])
            columns["subject"].append(subject)
            columns["pose"].append(FRONTAL_POSE)
            columns["yaw"].append(KDEF_YAW[FRONTAL_POSE])
        return finish(self, root, make_frame(columns), problems, num_classes=7)
