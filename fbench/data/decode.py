"""One image made ready for the decode cache, fast: decoded at the smallest size that still serves (JPEG's own
1/2, 1/4, 1/8 scaling), the face found on a small copy (by the landmark model of :mod:`fbench.data.landmarker`
where it is installed and the pose is not a full profile, else or when it finds none by
:func:`fbench.data.faces.locate_face`), the square crop kept in full-image pixels and cut from the reduced image,
then resized to the model's input.

Plain data in and out (:class:`FaceJob` -> :class:`Face`), so that it runs in worker processes (spawn) as well
as in threads. How each crop was made is one of ``METHODS``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fbench.data.faces import (
    DETECT_SHORT_SIDE,
    FALLBACK,
    FRONTAL,
    PROFILE,
    Square,
    crop_square,
    locate_face,
    resize,
    to_channels,
)
from fbench.data.images import read_image_reduced
from fbench.data.landmarker import MODEL_SHORT_SIDE, find_landmarks

BOX, MISSING_BOX, WHOLE_IMAGE = "box", "missing box", "whole image"
DLIB = "dlib"
# How a crop was made: around the landmark model's 68 points (dlib), by the frontal or the profile Haar detector,
# the fixed per-pose fall-back, the dataset's recorded box, the whole image where that box is missing, or the whole
# image by policy (aligned sets).
METHODS = (DLIB, FRONTAL, PROFILE, FALLBACK, BOX, MISSING_BOX, WHOLE_IMAGE)
FOUND = (DLIB, FRONTAL, PROFILE, BOX, WHOLE_IMAGE)  # the crops that count as "face found"
DETECTED = (FRONTAL, PROFILE, FALLBACK)  # the Haar detector's methods (always named in counts, even at 0)
# The poses the landmark model is tried on: it finds no face in a full profile (KDEF: 0 %), so those skip it.
MODEL_POSES = ("", "S", "HL", "HR")
REDUCTIONS = (8, 4, 2, 1)
CROP_OVERSAMPLING = 2


@dataclass(frozen=True)
class FaceJob:
    """What to make of one image. ``square`` (x0, y0, side in full-image pixels) with ``how`` is a crop known
    already (a recorded box, or a detection cached earlier); without a square, ``how`` = ``WHOLE_IMAGE`` or
    ``MISSING_BOX`` takes the whole image and ``how`` = "" runs the detectors: the landmark model named by
    ``model`` first (None: Haar only)."""

    path: str
    pose: str
    size: tuple[int, int, int]  # channels, height, width
    square: tuple[float, float, float] | None = None
    how: str = ""
    model: str | None = None


@dataclass(frozen=True)
class Face:
    """A prepared image: C x H x W uint8 pixels, the crop in full-image pixels, how the crop was made, and the
    landmark model's six points (6 x 2 full-image pixels) where it found the face just now (else None)."""

    pixels: np.ndarray
    square: tuple[float, float, float]
    how: str
    landmarks: np.ndarray | None = None


def reduction_for(side: float, target: int) -> int:
    """The largest JPEG reduction (8, 4, 2, 1) that leaves ``side`` pixels at least ``target`` pixels."""
    return next((r for r in REDUCTIONS if side / r >= target), 1)


def crop_reduction(side: float, target: int) -> int:
    """The reduction for a crop of ``side`` full-image pixels resized to ``target``: the crop keeps at least twice
    the target's pixels across, so that the final area resize sees detail finer than the position rounding in the
    reduced image (half a reduced pixel)."""
    return reduction_for(side, CROP_OVERSAMPLING * target)


def prepare_face(job: FaceJob, image: np.ndarray | None = None) -> Face:
    """Decode (or take ``image``, the full image as H x W (x 3) uint8), crop and resize one image."""
    import cv2

    channels, height, width = job.size
    target = max(height, width)
    gray = channels == 1
    known = Square(*job.square) if job.square is not None else None
    detect = known is None and job.how not in (WHOLE_IMAGE, MISSING_BOX)
    use_model = detect and job.model is not None and job.pose in MODEL_POSES

    def needed(full_height: int, full_width: int) -> int:
        if known is not None:
            return crop_reduction(known.side, target)
        if detect:
            return reduction_for(min(full_height, full_width), MODEL_SHORT_SIDE if use_model else DETECT_SHORT_SIDE)
        return crop_reduction(max(full_height, full_width), target)

    if image is None:
        pixels, full = read_image_reduced(Path(job.path), needed, gray=gray)
    else:
        pixels, full = image, (int(image.shape[0]), int(image.shape[1]))
    how = job.how
    landmarks = None
    if known is not None:
        square = known
    elif detect:
        luma = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        found = find_landmarks(luma, full) if use_model else None
        if found is not None:
            (square, landmarks), how = found, DLIB
        else:
            square, how = locate_face(luma, job.pose, full)
    else:
        square = Square.whole(*full)
    scale = pixels.shape[1] / full[1]
    if image is None and scale < 1.0 and square.side * scale < CROP_OVERSAMPLING * target:  # too coarse: finer
        pixels, full = read_image_reduced(Path(job.path), lambda h, w: crop_reduction(square.side, target), gray=gray)
        scale = pixels.shape[1] / full[1]
    scale_y = pixels.shape[0] / full[0]
    reduced = Square(square.x0 * scale, square.y0 * scale_y, square.side * scale)
    face = resize(to_channels(crop_square(pixels, reduced), channels), height, width)
    return Face(face.transpose(2, 0, 1), (square.x0, square.y0, square.side), how, landmarks)


def init_worker() -> None:
    """A worker process: one OpenCV thread (the processes are the parallelism), Ctrl-C left to the parent (which
    stops the pool), and an exit when the parent is gone (killed: nobody would ever send more work)."""
    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
