"""Facial landmarks from a model that ships with a package: dlib's HOG face detector and its 68-point shape
predictor (``shape_predictor_68_face_landmarks.dat``, carried by the ``face-recognition-models`` package).

Both are optional (``pip install "fbench[landmarks]"`` installs ``dlib-bin`` and ``face-recognition-models``);
:func:`missing_reason` says in one line what is absent, and data preparation then places landmarks at calibrated
per-pose positions instead (:mod:`fbench.data.placement`). ``FBENCH_LANDMARK_MODEL=none`` in the environment
turns the model off where it is installed (Haar crops and calibrated positions, as without it). dlib is imported
where it is used.

:func:`find_landmarks` runs the detector on a reduced grayscale copy of an image (shorter side about
``MODEL_SHORT_SIDE`` px: about half a KDEF photograph), takes the largest face, predicts its 68 points and returns
the six points the perturbations use (``fbench.data.table.LANDMARKS``: eye centres as the mean of each eye's six
points, the nose tip, the mouth corners, the chin) and the square crop around the 68 points, in full-image pixels.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fbench.data.faces import BOX_MARGIN, Square

MODEL_NAME = "dlib-68"
INSTALL = 'pip install "fbench[landmarks]" (dlib-bin and face-recognition-models)'
MODEL_SHORT_SIDE = 280  # the HOG detector's smallest face is 80 px: a face a third of this side is found
# The six points in the 68-point (iBUG 300-W) numbering: the subject's right eye (image left), left eye, nose tip,
# mouth corners (image left, right) and chin.
RIGHT_EYE, LEFT_EYE = tuple(range(36, 42)), tuple(range(42, 48))
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT, CHIN = 30, 48, 54, 8
OFF_VARIABLE = "FBENCH_LANDMARK_MODEL"
FOREHEAD = 0.25  # the crop's box reaches this fraction of the brow-to-chin height above the brows

# One detector and predictor per process, loaded on first use (about two seconds) and used under a lock: dlib's
# Python calls hold the interpreter lock, so threads would gain nothing from copies of their own but their loading.
_LOADED: list[tuple[Any, Any]] = []
_LOCK = threading.Lock()


def predictor_path() -> Path | None:
    """The 68-point model file inside the installed ``face_recognition_models`` package (found without importing
    the package, whose ``__init__`` needs ``pkg_resources``), or None."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    return path if path.is_file() else None


def missing_reason() -> str | None:
    """None when the landmark model can run, else one line naming what is missing and how to install it (or that
    ``FBENCH_LANDMARK_MODEL=none`` turned it off)."""
    if os.environ.get(OFF_VARIABLE, "").strip().lower() in ("none", "off", "0"):
        return f"turned off by {OFF_VARIABLE}={os.environ[OFF_VARIABLE]}"
    if importlib.util.find_spec("dlib") is None:
        return f"dlib is not installed: {INSTALL}"
    if predictor_path() is None:
        return f"dlib's 68-point model (face-recognition-models) is not installed: {INSTALL}"
    return None


def available_model() -> str | None:
    """``MODEL_NAME`` when the landmark model can run here, else None."""
    return MODEL_NAME if missing_reason() is None else None


def _models() -> tuple[Any, Any]:
    """This process's detector and predictor; call with ``_LOCK`` held."""
    if not _LOADED:
        import dlib

        path = predictor_path()
        if path is None:
            raise RuntimeError(f"dlib's 68-point model is not installed: {INSTALL}")
        _LOADED.append((dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))))
    return _LOADED[0]


def model_copy(gray: np.ndarray) -> np.ndarray:
    """``gray`` shrunk (area interpolation) so that its shorter side is ``MODEL_SHORT_SIDE``; unchanged when it is
    that small already."""
    import cv2

    height, width = gray.shape
    scale = MODEL_SHORT_SIDE / min(height, width)
    if scale >= 0.95:
        return np.ascontiguousarray(gray)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def six_points(points: np.ndarray) -> np.ndarray:
    """68 x 2 points -> the 6 x 2 landmarks of ``fbench.data.table.LANDMARKS``."""
    return np.stack([points[list(RIGHT_EYE)].mean(axis=0), points[list(LEFT_EYE)].mean(axis=0), points[NOSE_TIP],
                     points[MOUTH_LEFT], points[MOUTH_RIGHT], points[CHIN]])


def square_from_points(points: np.ndarray) -> Square:
    """The crop around 68 points: their bounding box raised by ``FOREHEAD`` of its height above the brows,
    squared and widened by ``BOX_MARGIN``."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return Square.around(float(x0), float(y0 - FOREHEAD * (y1 - y0)), float(x1), float(y1), BOX_MARGIN)


def find_landmarks(gray: np.ndarray, full_size: tuple[int, int] | None = None
                   ) -> tuple[Square, np.ndarray] | None:
    """The largest face dlib finds in ``gray`` (a grayscale image, maybe a reduced copy of one of ``full_size`` =
    (height, width)): its crop square and six landmarks (6 x 2), in full-image pixels; None when it finds none."""
    import dlib

    height, width = full_size or gray.shape[:2]
    small = model_copy(gray)
    with _LOCK:
        detector, predictor = _models()
        faces = detector(small, 0)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda rect: rect.area())
        shape = predictor(small, dlib.rectangle(face.left(), face.top(), face.right(), face.bottom()))
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)
    points = (points + 0.5) * np.array([width / small.shape[1], height / small.shape[0]]) - 0.5
    return square_from_points(points), six_points(points)
