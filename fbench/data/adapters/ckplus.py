"""CK+ (Extended Cohn-Kanade): 593 frontal sequences of 123 subjects, each from neutral to an expression's peak.

The official layout: ``cohn-kanade-images/S005/001/S005_001_00000001.png`` (one folder per subject and sequence,
frames numbered from 1) and ``Emotion/S005/001/S005_001_00000011_emotion.txt``, which holds one number such as
``3.0000000e+00`` and names the sequence's labelled (peak) frame; 327 sequences have one. Codes: 0 neutral,
1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.

A labelled sequence gives its last ``PEAK_FRAMES`` frames and its labelled frame as the expression, and its first
frame as neutral (the usual CK+ protocol: the sequences start at a neutral face and end at the peak). Sequences
without an emotion file are left out and counted in ``table.meta["sequences_unlabelled"]`` (with a sentence in
``table.meta["notes"]``). Columns beside the required ones: ``sequence`` (``S005/001``) and ``frame`` (the
frame's number). ``subject`` is ``S005``: a sequence belongs to one subject, so subject-grouped protocols
(``subject_kfold``, ``cross_pose``) never put frames of one sequence on both sides of a split; per-image
``stratified_kfold`` would. CK+ has no official split. Every frame is frontal (pose "S", yaw 0).
"""

from __future__ import annotations

import re
from pathlib import Path

from fbench.data.adapter import OnError
from fbench.data.adapters._common import (
    FRONTAL_POSE,
    MISSING_IMAGE,
    UNKNOWN_LABEL,
    BuiltinAdapter,
    Problems,
    finish,
    make_frame,
    relative_posix,
)
from fbench.data.table import KDEF_YAW, LABEL_INDEX, SampleTable
from fbench.registry import register_dataset

IMAGES_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"
# How many of a labelled sequence's last frames count as its expression (the labelled frame is always one of
# them too). The last frames are at or next to the peak; 3 is the common choice in CK+ papers, and more frames
# add near-duplicates rather than information.
PEAK_FRAMES = 3

LABELS = {
    0: LABEL_INDEX["neutral"],
    1: LABEL_INDEX["anger"],
    2: LABEL_INDEX["contempt"],
    3: LABEL_INDEX["disgust"],
    4: LABEL_INDEX["fear"],
    5: LABEL_INDEX["happy"],
    6: LABEL_INDEX["sad"],
    7: LABEL_INDEX["surprise"],
}

SUBJECT = re.compile(r"^S\d+$")
FRAME_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)
EMOTION_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion\.txt$", re.IGNORECASE)

BAD_EMOTION = "unreadable emotion file"
TWO_EMOTIONS = "several emotion files for one sequence"


@register_dataset("ckplus")
class CkplusAdapter(BuiltinAdapter):
    name = "ckplus"
    description = (f"CK+: 123 subjects, frontal sequences from neutral to peak; 8 expressions with contempt; the "
                   f"last {PEAK_FRAMES} frames of a labelled sequence as its expression, the first as neutral")
    default_crop = "haar"
    expected_layout = (f"<root>/{IMAGES_DIR}/S005/001/S005_001_00000001.png ... and "
                       f"<root>/{EMOTION_DIR}/S005/001/S005_001_00000011_emotion.txt (one CK+ code 0-7 such as "
                       "3.0000000e+00, for labelled sequences)")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        for folder in (IMAGES_DIR, EMOTION_DIR):
            if not (root / folder).is_dir():
                raise self.root_error(f"{str(root / folder)!r} is not a folder")
        problems = Problems(self.name, on_error)
        columns: dict[str, list] = {c: [] for c in ("sample_id", "path", "label", "subject", "pose", "yaw",
                                                    "sequence", "frame")}
        labelled = unlabelled = 0
        for subject_dir in sorted(p for p in (root / IMAGES_DIR).iterdir() if p.is_dir() and SUBJECT.match(p.name)):
            for sequence_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                frames = sequence_frames(sequence_dir)
                if not frames:
                    continue
                sequence = f"{subject_dir.name}/{sequence_dir.name}"
                emotion = read_emotion(root, sequence, problems)
                if emotion is None:
                    unlabelled += 1
                    continue
                code, peak = emotion
                labelled += 1
                chosen = {number: LABELS[code] for number in sorted(frames)[-PEAK_FRAMES:]}
                if peak not in frames:
                    name = f"{subject_dir.name}_{sequence_dir.name}_{peak:08d}.png"
                    problems.error(MISSING_IMAGE, f"{IMAGES_DIR}/{sequence}/{name} (the labelled frame of {sequence})")
                else:
                    chosen[peak] = LABELS[code]
                first = min(frames)
                chosen.setdefault(first, LABEL_INDEX["neutral"])
                for number, label in sorted(chosen.items()):
                    relative = relative_posix(frames[number], root)
                    columns["sample_id"].append(relative)
                    columns["path"].append(relative)
                    columns["label"].append(label)
                    columns["subject"].append(subject_dir.name)
                    columns["pose"].append(FRONTAL_POSE)
                    columns["yaw"].append(KDEF_YAW[FRONTAL_POSE])
                    columns["sequence"].append(sequence)
                    columns["frame"].append(number)
        meta: dict[str, object] = {"sequences_labelled": labelled, "sequences_unlabelled": unlabelled,
                                   "peak_frames": PEAK_FRAMES}
        if unlabelled:
            meta["notes"] = [f"{unlabelled} of {labelled + unlabelled} sequences have no emotion file under "
                             f"{EMOTION_DIR}/ and are left out"]
        frame = make_frame(columns)
        frame["frame"] = frame["frame"].astype("int64")
        return finish(self, root, frame, problems, num_classes=8, meta=meta)


def sequence_frames(folder: Path) -> dict[int, Path]:
    """A sequence's PNG frames by frame number (``S005_001_00000011.png`` -> 11); other files are ignored."""
    frames: dict[int, Path] = {}
    for path in folder.iterdir():
        match = FRAME_NAME.match(path.name)
        if match is not None and path.is_file():
            frames[int(match.group(3))] = path
    return frames


def read_emotion(root: Path, sequence: str, problems: Problems) -> tuple[int, int] | None:
    """(CK+ code, labelled frame number) of ``sequence`` (``S005/001``), or None when it has no emotion file.
    A file that does not hold one code 0-7 is an error in ``problems`` (and the sequence is left out)."""
    folder = root / EMOTION_DIR / sequence
    files = sorted(p for p in folder.glob("*_emotion.txt") if EMOTION_NAME.match(p.name)) if folder.is_dir() else []
    if not files:
        return None
    where = relative_posix(files[0], root)
    if len(files) > 1:
        problems.error(TWO_EMOTIONS, f"{EMOTION_DIR}/{sequence} ({', '.join(p.name for p in files)})")
        return None
    try:
        value = float(files[0].read_text().split()[0])
    except (OSError, ValueError, IndexError):
        problems.error(BAD_EMOTION, where, hint="An emotion file holds one CK+ code such as 3.0000000e+00.")
        return None
    if not value.is_integer() or int(value) not in LABELS:
        problems.error(UNKNOWN_LABEL, f"{where} (code {value:g}; CK+ codes are 0-7)")
        return None
    match = EMOTION_NAME.match(files[0].name)
    assert match is not None
    return int(value), int(match.group(3))
