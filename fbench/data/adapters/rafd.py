"""RaFD (Radboud Faces Database): 67 models x 8 expressions x 3 gaze directions x 5 camera angles, 681 x 1024 JPGs.

File names carry everything: ``Rafd090_01_Caucasian_female_angry_frontal.jpg`` = camera angle 090, model 01,
ethnicity, gender, expression (angry, contemptuous, disgusted, fearful, happy, neutral, sad, surprised; contempt is
the canonical ``contempt``), gaze (frontal, left, right). RaFD has no official split.

Pose: the five cameras stand on a half circle, 045 degrees apart, and 090 faces the model. ``camera`` keeps the
angle as written; ``yaw`` is ``camera - 90`` degrees (000 -> -90, 045 -> -45, 090 -> 0, 135 -> +45, 180 -> +90) and
``pose`` the KDEF code of that yaw (FL, HL, S, HR, FR), so per-pose reports, cross-pose protocols and the canonical
landmarks of the perturbations treat RaFD and KDEF alike. The sign is a convention (camera angle order mapped onto
KDEF's left-to-right order), not checked against the photographs: if RaFD's 000 camera shows the other side of the
face than KDEF's FL, negate ``yaw`` (or use ``camera``) when comparing the two sets pose by pose.

Gaze is a condition: ``gaze`` holds frontal / left / right, and ``cond_gaze_frontal``, ``cond_gaze_left``,
``cond_gaze_right`` tag the rows, so a suite can score ``subset:gaze_left``. ``subject`` is ``<number>_<ethnicity>``
(``01_Caucasian``); ``ethnicity`` and ``gender`` are columns too.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fbench.data.adapter import OnError
from fbench.data.adapters._common import BuiltinAdapter, Problems, finish, make_frame, relative_posix
from fbench.data.table import KDEF_YAW, LABEL_INDEX, SampleTable
from fbench.registry import register_dataset

FILE_NAME = re.compile(r"^Rafd(\d{3})_(\d+)_([A-Za-z]+)_(female|male)_([a-z]+)_(frontal|left|right)\.jpe?g$",
                       re.IGNORECASE)

EXPRESSIONS = {
    "angry": LABEL_INDEX["anger"],
    "contemptuous": LABEL_INDEX["contempt"],
    "disgusted": LABEL_INDEX["disgust"],
    "fearful": LABEL_INDEX["fear"],
    "happy": LABEL_INDEX["happy"],
    "neutral": LABEL_INDEX["neutral"],
    "sad": LABEL_INDEX["sad"],
    "surprised": LABEL_INDEX["surprise"],
}
CAMERA_POSES = {0: "FL", 45: "HL", 90: "S", 135: "HR", 180: "FR"}  # camera angle -> KDEF pose code (yaw = angle - 90)
GAZES = ("frontal", "left", "right")

BAD_NAME = "file name not in RaFD naming (e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg)"
BAD_CAMERA = "unknown camera angle (RaFD's are 000, 045, 090, 135, 180)"
BAD_EXPRESSION = "unknown expression (RaFD's are " + ", ".join(EXPRESSIONS) + ")"


@register_dataset("rafd")
class RafdAdapter(BuiltinAdapter):
    name = "rafd"
    description = ("RaFD: 67 models, 8 expressions with contempt, 5 camera angles (yaw -90..90 deg), 3 gaze "
                   "directions (cond_gaze_*); no official split")
    default_crop = "haar"
    expected_layout = ("a folder holding the RaFD JPGs at any depth, named like "
                       "Rafd090_01_Caucasian_female_angry_frontal.jpg (camera 000/045/090/135/180, model number, "
                       "ethnicity, gender, expression, gaze frontal/left/right)")

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root = self.require_dir(root)
        problems = Problems(self.name, on_error)
        files = sorted(p for p in root.rglob("*")
                       if p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith(".") and p.is_file())
        if not files:
            raise self.root_error(f"no .jpg files under {str(root)!r}")
        names = ("sample_id", "path", "label", "subject", "pose", "yaw", "camera", "gaze", "ethnicity", "gender")
        columns: dict[str, list] = {c: [] for c in names}
        for file in files:
            relative = relative_posix(file, root)
            match = FILE_NAME.match(file.name)
            if match is None:
                problems.error(BAD_NAME, relative, hint="Point --data rafd=PATH at a folder of RaFD photographs only.")
                continue
            camera_text, number, ethnicity, gender, expression, gaze = match.groups()
            camera = int(camera_text)
            if camera not in CAMERA_POSES:
                problems.error(BAD_CAMERA, relative)
                continue
            if expression.lower() not in EXPRESSIONS:
                problems.error(BAD_EXPRESSION, relative)
                continue
            pose = CAMERA_POSES[camera]
            columns["sample_id"].append(relative)
            columns["path"].append(relative)
            columns["label"].append(EXPRESSIONS[expression.lower()])
            columns["subject"].append(f"{number}_{ethnicity}")
            columns["pose"].append(pose)
            columns["yaw"].append(KDEF_YAW[pose])
            columns["camera"].append(camera)
            columns["gaze"].append(gaze.lower())
            columns["ethnicity"].append(ethnicity)
            columns["gender"].append(gender.lower())
        frame = make_frame(columns)
        frame["camera"] = frame["camera"].astype(np.int64)
        for gaze in GAZES:
            frame[f"cond_gaze_{gaze}"] = (frame["gaze"] == gaze).to_numpy(bool)
        return finish(self, root, frame, problems, num_classes=8)
