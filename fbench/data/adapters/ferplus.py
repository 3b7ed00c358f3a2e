"""FERPlus (github.com/microsoft/FERPlus): FER-2013's images relabelled by 10 annotators into 8 expressions.

``<root>/fer2013new.csv`` (columns Usage, Image name, neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt, unknown, NF) is row-aligned with the Kaggle ``fer2013.csv``, which supplies the pixels. fer2013.csv is
looked for in this order: the ``fer2013_csv`` option, ``<root>/fer2013.csv``, ``$FBENCH_DATA_FER2013`` (its folder
or the file). Rows with an empty Image name have no FER+ image and are excluded.

Single labels from the votes (``vote_rule``):

- ``"official"`` (default): Microsoft's reference ``majority`` mode (src/ferplus.py), the protocol FER+ results
  are usually reported under: single votes are discarded as outliers, then the top class must hold more than
  half of the remaining votes (unknown and NF included) and be an emotion.
- ``"plurality"``: the emotion with the most votes among the 8; the image is excluded when unknown or NF has at
  least as many votes as that emotion, or when two emotions tie for the most votes.

Excluded images are listed in ``table.report`` under "excluded: ..."; they never raise. The vote counts stay in the
table as ``votes_<canonical name>`` (plus ``votes_unknown`` and ``votes_nf``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fbench.data.adapter import OnError
from fbench.data.adapters._common import BuiltinAdapter, Problems, finish, make_frame
from fbench.data.adapters.fer2013 import CSV_NAME as FER2013_CSV
from fbench.data.adapters.fer2013 import SPLITS, read_fer_csv
from fbench.data.table import CANONICAL_LABELS, LABEL_INDEX, SampleTable
from fbench.errors import FbenchError
from fbench.registry import register_dataset

VOTES_CSV = "fer2013new.csv"
# FER+ vote column -> canonical label; the order of the CSV's emotion columns.
EMOTIONS = {
    "neutral": LABEL_INDEX["neutral"],
    "happiness": LABEL_INDEX["happy"],
    "surprise": LABEL_INDEX["surprise"],
    "sadness": LABEL_INDEX["sad"],
    "anger": LABEL_INDEX["anger"],
    "disgust": LABEL_INDEX["disgust"],
    "fear": LABEL_INDEX["fear"],
    "contempt": LABEL_INDEX["contempt"],
}
NON_EMOTIONS = ("unknown", "NF")
VOTE_COLUMNS = (*EMOTIONS, *NON_EMOTIONS)
# table columns for the vote counts, named by canonical label: votes_happy, ..., votes_unknown, votes_nf
VOTE_TABLE_COLUMNS = {**{c: f"votes_{CANONICAL_LABELS[i]}" for c, i in EMOTIONS.items()},
                      **{c: f"votes_{c.lower()}" for c in NON_EMOTIONS}}
VoteRule = Literal["plurality", "official"]

NO_IMAGE = "no FER+ image (empty Image name)"
NOT_EMOTION = "unknown or not a face by the votes"
TIED = "tied top emotions"
NO_MAJORITY = "no majority (official rule)"
BAD_VOTES = "malformed vote row"


def vote_label(votes: np.ndarray, rule: VoteRule) -> int | str:
    """The index into ``VOTE_COLUMNS`` of the label, or the reason the image is excluded."""
    emotions = votes[: len(EMOTIONS)]
    if rule == "official":
        kept = np.where(votes <= 1, 0, votes)
        total, best = kept.sum(), int(np.argmax(kept))
        if total == 0 or kept[best] <= 0.5 * total:
            return NO_MAJORITY
        return best if best < len(EMOTIONS) else NOT_EMOTION
    top = emotions.max()
    if votes[len(EMOTIONS):].max() >= top:
        return NOT_EMOTION
    if (emotions == top).sum() > 1:
        return TIED
    return int(np.argmax(emotions))


def parse_votes(row: dict[str, str]) -> np.ndarray | None:
    try:
        votes = np.array([int(float(row[c])) for c in VOTE_COLUMNS], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        return None
    return None if (votes < 0).any() else votes


@register_dataset("ferplus")
class FerplusAdapter(BuiltinAdapter):
    name = "ferplus"
    description = "FERPlus: FER-2013 images with 10-annotator votes over 8 expressions; majority labels"
    default_crop = "none"
    expected_layout = (f"<root>/{VOTES_CSV} (from github.com/microsoft/FERPlus) beside the Kaggle {FER2013_CSV} "
                       f"(<root>/{FER2013_CSV}, the fer2013_csv option, or FBENCH_DATA_FER2013)")

    def __init__(self, *, verify_images: bool = True, fer2013_csv: str | Path | None = None,
                 vote_rule: VoteRule = "official") -> None:
        super().__init__(verify_images=verify_images)
        if vote_rule not in ("plurality", "official"):
            raise FbenchError(f"ferplus vote_rule must be 'plurality' or 'official', got {vote_rule!r}")
        self.fer2013_csv = fer2013_csv
        self.vote_rule = vote_rule

    def options(self) -> dict[str, Any]:
        return {**super().options(), "fer2013_csv": self.fer2013_csv, "vote_rule": self.vote_rule}

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        votes_path = self.require_file(root, VOTES_CSV)
        pixels_path = self.find_fer2013(root)
        problems = Problems(self.name, on_error)
        fer = read_fer_csv(pixels_path, problems, columns=("pixels", "Usage"))
        plus = read_votes(votes_path)
        check_aligned(votes_path, plus, pixels_path, [r.get("Usage", "") for r in fer.rows])
        columns: dict[str, list] = {c: [] for c in ("sample_id", "index", "label", "split", "image_name")}
        columns.update({VOTE_TABLE_COLUMNS[c]: [] for c in VOTE_COLUMNS})
        for i, row in enumerate(plus):
            where = f"{VOTES_CSV}:{i + 2}"
            name = (row.get("Image name") or "").strip()
            if not name:
                problems.exclude(NO_IMAGE, where)
                continue
            votes = parse_votes(row)
            if votes is None:
                problems.error(BAD_VOTES, where)
                continue
            label = vote_label(votes, self.vote_rule)
            if isinstance(label, str):
                problems.exclude(label, f"{where} ({name})")
                continue
            if not fer.pixels_ok[i]:
                continue
            columns["sample_id"].append(f"{self.name}:{i}")
            columns["index"].append(i)
            columns["label"].append(EMOTIONS[VOTE_COLUMNS[label]])
            columns["split"].append(SPLITS[row["Usage"].strip()])
            columns["image_name"].append(name)
            for column, count in zip(VOTE_COLUMNS, votes):
                columns[VOTE_TABLE_COLUMNS[column]].append(int(count))
        meta = {"fer2013_csv": str(pixels_path), "vote_rule": self.vote_rule}
        return finish(self, root, make_frame(columns), problems, num_classes=8, aligned=True,
                      pixels=fer.pixels, meta=meta)

    def find_fer2013(self, root: Path) -> Path:
        candidates: list[Path] = []
        if self.fer2013_csv:
            candidates.append(Path(self.fer2013_csv).expanduser())
        candidates.append(root / FER2013_CSV)
        if os.environ.get("FBENCH_DATA_FER2013"):
            env = Path(os.environ["FBENCH_DATA_FER2013"]).expanduser()
            candidates.append(env if env.suffix == ".csv" else env / FER2013_CSV)
        for path in candidates:
            if path.is_file():
                return path
        raise self.root_error(
            f"the Kaggle {FER2013_CSV} (pixels for FERPlus) was not found; looked at "
            f"{', '.join(repr(str(p)) for p in candidates)}. Put it in {str(root)!r}, set FBENCH_DATA_FER2013, "
            "or pass the fer2013_csv option")


def read_votes(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("Usage", "Image name", *VOTE_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise FbenchError(f"{str(path)!r} lacks column(s) {missing} (has {reader.fieldnames}); expected "
                              "FERPlus's fer2013new.csv")
        return list(reader)


def check_aligned(votes_path: Path, plus: list[dict[str, str]], pixels_path: Path, usages: list[str]) -> None:
    """fer2013new.csv must match fer2013.csv row for row; a different file would silently mislabel every image."""
    if len(plus) != len(usages):
        raise FbenchError(f"{str(votes_path)!r} has {len(plus)} rows but {str(pixels_path)!r} has {len(usages)}; "
                          "the two files must be row-aligned (use the original Kaggle fer2013.csv)")
    bad = [i for i, (row, usage) in enumerate(zip(plus, usages)) if (row.get("Usage") or "").strip() != usage.strip()]
    if bad:
        raise FbenchError(f"{str(votes_path)!r} and {str(pixels_path)!r} disagree on Usage in {len(bad)} row(s), "
                          f"first at data row {bad[0]}; the two files must be row-aligned")
    unknown = sorted({(row.get("Usage") or "").strip() for row in plus} - set(SPLITS))
    if unknown:
        raise FbenchError(f"{str(votes_path)!r} has unknown Usage value(s) {unknown}; expected {sorted(SPLITS)}")
