"""Face crops: from a recorded box, from an OpenCV Haar detector (with a fixed per-pose fall-back), or none.

A crop is a square in image pixels around the face (side = the box's longer side times ``1 + margin``); the
parts outside the image are padded with the edge colour. Landmarks follow the crop into normalised [0, 1]
coordinates of the cropped image. The detectors scan a small copy of the image (shorter side 144 px, so the
smallest face they find is 1/6 of the shorter side, as at full resolution) and the square is mapped back to the
full image's pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fbench.errors import FbenchError

if TYPE_CHECKING:  # OpenCV is imported where it is used: importing it costs more than the rest of this module
    import cv2

BOX_MARGIN = 0.15
# Where a face sits in a KDEF photograph (562 x 762) when the detector finds none, as fractions of the
# image (x0, y0, x1, y1), by pose. Profile faces sit off-centre, towards the side the face points to.
KDEF_FALLBACK_BOXES = {
    "S": (0.20, 0.22, 0.80, 0.72),
    "HL": (0.18, 0.22, 0.78, 0.72),
    "HR": (0.22, 0.22, 0.82, 0.72),
    "FL": (0.12, 0.22, 0.72, 0.72),
    "FR": (0.28, 0.22, 0.88, 0.72),
    "": (0.15, 0.15, 0.85, 0.85),
}


@dataclass(frozen=True)
class Square:
    """A square crop: top-left corner and side, in image pixels (may extend past the image)."""

    x0: float
    y0: float
    side: float

    @classmethod
    def around(cls, x0: float, y0: float, x1: float, y1: float, margin: float = BOX_MARGIN) -> Square:
        side = max(x1 - x0, y1 - y0) * (1.0 + margin)
        return cls((x0 + x1 - side) / 2.0, (y0 + y1 - side) / 2.0, side)

    @classmethod
    def whole(cls, height: int, width: int) -> Square:
        """The whole image, as the square that holds it (aligned sets are square already)."""
        return cls.around(0, 0, width, height, margin=0.0)


def crop_square(image: np.ndarray, square: Square) -> np.ndarray:
    """Cut ``square`` out of ``image``, padding outside parts with the edge pixels."""
    import cv2

    x0, y0 = int(round(square.x0)), int(round(square.y0))
    side = max(1, int(round(square.side)))
    height, width = image.shape[:2]
    pad_left, pad_top = max(0, -x0), max(0, -y0)
    pad_right, pad_bottom = max(0, x0 + side - width), max(0, y0 + side - height)
    if pad_left or pad_top or pad_right or pad_bottom:
        image = cv2.copyMakeBorder(image, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad_left, y0 + pad_top
    return image[y0:y0 + side, x0:x0 + side]


def landmarks_in_crop(landmarks: np.ndarray, square: Square) -> np.ndarray:
    """Pixel landmarks (K x 2) -> normalised coordinates of the crop."""
    return ((landmarks - np.array([square.x0, square.y0])) / square.side).astype(np.float32)


_PER_THREAD = threading.local()


def _cascades() -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
    """The frontal and profile cascades of this thread: a CascadeClassifier keeps working buffers, so threads that
    share one get each other's detections."""
    import cv2

    if hasattr(_PER_THREAD, "cascades"):
        return _PER_THREAD.cascades
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise FbenchError(
            "OpenCV has no Haar cascades (opencv-python-headless 5.x ships none); install "
            "'opencv-python-headless<5' or use a dataset with recorded face boxes"
        )
    folder = cv2.data.haarcascades  # type: ignore[attr-defined]  # OpenCV's stubs leave out cv2.data
    frontal = cv2.CascadeClassifier(folder + "haarcascade_frontalface_default.xml")
    profile = cv2.CascadeClassifier(folder + "haarcascade_profileface.xml")
    _PER_THREAD.cascades = (frontal, profile)
    return frontal, profile


# The smallest face the detectors look for is 1/6 of the image's shorter side. The frontal cascade's window is
# 24 px, so detection runs on a copy whose shorter side is 6 x 24 px: the scale pyramid then starts at the smallest
# face, as it does at full resolution, and the copy costs a fraction of the full image to scan and to decode.
MIN_FACE_FRACTION = 6
DETECT_SHORT_SIDE = 24 * MIN_FACE_FRACTION
FRONTAL, PROFILE, FALLBACK = "frontal", "profile", "fallback"
# Which way the profile cascade (trained on faces whose nose points to the image's left) looks, by pose: the image
# itself for left profiles (FL, HL: KDEF's, like the synthetic set's, look to the image's left), its mirror image
# for right ones. Half profiles (HL, HR) look the other way too when that finds nothing; full profiles do not (a
# face seen from the side shows one way only, so a hit the other way is not that face, and skipping the pass saves
# a sixth of the detection time). Frontal and unknown poses look both ways and keep the larger face.
_MIRROR_FIRST = {"FL": False, "HL": False, "FR": True, "HR": True}
_FULL_PROFILES = ("FL", "FR")


def detection_copy(gray: np.ndarray) -> np.ndarray:
    """``gray`` shrunk (area interpolation) so that its shorter side is ``DETECT_SHORT_SIDE``; unchanged when it
    is that small already."""
    import cv2

    height, width = gray.shape
    scale = DETECT_SHORT_SIDE / min(height, width)
    if scale >= 1.0:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def locate_face(gray: np.ndarray, pose: str = "", full_size: tuple[int, int] | None = None) -> tuple[Square, str]:
    """The face in a grayscale image: the largest Haar detection (frontal, then profile), or the fixed per-pose
    crop. ``gray`` may be a reduced copy of an image of ``full_size`` = (height, width); the square is in the
    full image's pixels. Returns the square and how it was found: ``FRONTAL``, ``PROFILE`` or ``FALLBACK``."""
    height, width = full_size or gray.shape[:2]
    small = detection_copy(gray)
    small_height, small_width = small.shape
    scale_x, scale_y = width / small_width, height / small_height
    min_side = max(24, min(small_height, small_width) // MIN_FACE_FRACTION)
    frontal, profile = _cascades()

    def boxes(cascade: cv2.CascadeClassifier, mirrored: bool) -> list[tuple[int, int, int, int]]:
        image = small[:, ::-1].copy() if mirrored else small
        found = cascade.detectMultiScale(image, 1.1, 5, minSize=(min_side, min_side))
        return [(small_width - int(x) - int(w) if mirrored else int(x), int(y), int(w), int(h))
                for (x, y, w, h) in found]

    candidates, how = [], FRONTAL
    if pose in ("", "S", "HL", "HR"):
        candidates = boxes(frontal, mirrored=False)
    if not candidates:
        how = PROFILE
        if pose in _MIRROR_FIRST:
            first = _MIRROR_FIRST[pose]
            candidates = boxes(profile, mirrored=first)
            if not candidates and pose not in _FULL_PROFILES:
                candidates = boxes(profile, mirrored=not first)
        else:
            candidates = boxes(profile, mirrored=False) + boxes(profile, mirrored=True)
    if candidates:
        x, y, w, h = max(candidates, key=lambda b: b[2] * b[3])
        return Square.around(x * scale_x, y * scale_y, (x + w) * scale_x, (y + h) * scale_y), how
    return fallback_square(pose, height, width), FALLBACK


def fallback_square(pose: str, height: int, width: int) -> Square:
    """The fixed crop where a KDEF photograph's face sits, by pose, for an image of ``height`` x ``width``."""
    fx0, fy0, fx1, fy1 = KDEF_FALLBACK_BOXES.get(pose, KDEF_FALLBACK_BOXES[""])
    return Square.around(fx0 * width, fy0 * height, fx1 * width, fy1 * height, margin=0.0)


def detect_face(image: np.ndarray, pose: str = "") -> tuple[Square, bool]:
    """:func:`locate_face` on an H x W (x 3 RGB) image: the square and whether a detector found it."""
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    square, how = locate_face(gray, pose)
    return square, how != FALLBACK


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """H x W or H x W x 3 uint8 -> H x W x channels (grayscale by ITU-R 601 luma)."""
    import cv2

    if channels == 1:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return gray[:, :, None]
    if channels == 3:
        return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    raise FbenchError(f"images can be cached with 1 or 3 channels, not {channels}")


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area interpolation when shrinking (no aliasing), bilinear when enlarging."""
    import cv2

    shrinking = image.shape[0] > height or image.shape[1] > width
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return resized[:, :, None] if resized.ndim == 2 else resized
