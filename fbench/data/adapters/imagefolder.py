"""Any dataset laid out as ``<root>/<class>/<image>`` or ``<root>/<split>/<class>/<image>``.

The second layout is used when every top-level folder is a split name (train, val, valid, validation, test; valid
and validation become "val"). Class folders are expression names or synonyms (``fbench.data.labels``: "angry",
"Happiness", "surprised", ...); images are found at any depth below a class folder; other files and hidden entries
are ignored, as are files directly in ``<root>`` or a split folder.

num_classes is 8 when a class folder means contempt, else 7, even when the classes present are a subset of the
first seven (a 7-class model still scores a 5-class test set, and labels keep their canonical indices).
"""

from __future__ import annotations

from pathlib import Path

from fbench.data.adapter import OnError
from fbench.data.adapters._common import (
    UNKNOWN_LABEL,
    BuiltinAdapter,
    Problems,
    finish,
    make_frame,
    relative_posix,
)
from fbench.data.images import IMAGE_SUFFIXES
from fbench.data.labels import accepted_names, find_label
from fbench.data.table import LABEL_INDEX, SampleTable
from fbench.errors import FbenchError
from fbench.registry import register_dataset

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


@register_dataset("imagefolder")
class ImagefolderAdapter(BuiltinAdapter):
    name = "imagefolder"
    description = "Images in one folder per expression (<root>/<class>/...), optionally inside split folders"
    default_crop = "none"
    expected_layout = ("<root>/<class>/<image> or <root>/<split>/<class>/<image>, class folders named by "
                       "expression (neutral, happy, sad, surprise, fear, disgust, anger, contempt or a synonym), "
                       "split folders train/val/test")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        problems = Problems(self.name, on_error)
        columns: dict[str, list] = {"sample_id": [], "path": [], "label": [], "split": []}
        unknown: list[str] = []
        for split, class_dir in self.class_dirs(root):
            label = find_label(class_dir.name)
            files = images_under(class_dir)
            if label is None:
                unknown.append(relative_posix(class_dir, root))
                for file in files:
                    problems.error(UNKNOWN_LABEL, relative_posix(file, root))
                if not files:
                    problems.error(UNKNOWN_LABEL, relative_posix(class_dir, root) + "/")
                continue
            for file in files:
                relative = relative_posix(file, root)
                columns["sample_id"].append(relative)
                columns["path"].append(relative)
                columns["label"].append(label)
                columns["split"].append(split)
        if unknown:
            problems.hint(f"Class folder(s) {unknown} are not expression names; rename them to accepted names "
                          f"(case-insensitive): {accepted_names()}.")
        frame = make_frame(columns)
        num_classes = 8 if (frame["label"] == LABEL_INDEX["contempt"]).any() else 7
        return finish(self, root, frame, problems, num_classes=num_classes)

    def class_dirs(self, root: Path) -> list[tuple[str, Path]]:
        """(split, class folder) pairs, split "" for the flat layout."""
        top = visible_dirs(root)
        if not top:
            raise self.root_error(f"{str(root)!r} has no class folders")
        is_split = [d.name.lower() in SPLIT_NAMES for d in top]
        if all(is_split):
            return [(SPLIT_NAMES[d.name.lower()], c) for d in top for c in visible_dirs(d)]
        if any(is_split):
            splits = [d.name for d, s in zip(top, is_split) if s]
            others = [d.name for d, s in zip(top, is_split) if not s]
            raise FbenchError(
                f"dataset {self.name!r}: {str(root)!r} mixes split folders {splits} with other folders {others}; "
                "use either <root>/<class>/... or <root>/<split>/<class>/... with split folders "
                f"{sorted(SPLIT_NAMES)} only")
        return [("", d) for d in top]
