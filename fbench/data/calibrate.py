"""Calibrating the landmark positions of crops no landmark model placed, against the crop policy real images get.

Synthetic faces (``fbench.data.synth``: their true landmarks are known) are rendered at KDEF's size, cropped
exactly as a real photograph is (:func:`fbench.data.faces.locate_face`: the Haar detectors on a small copy, the
profile box and its margin, the fixed per-pose box where they find nothing), and the true landmarks are measured
in each crop's normalised coordinates. The median position per landmark, per crop method and pose, is the
calibrated table that :mod:`fbench.data.placement` keeps in its source; beside it, the spread of the true
positions around that median (the ``SPREAD_PERCENTILE``-th percentile of the absolute offset, per landmark and
axis, over the faces the crop framed as usual: not those a detector boxed on something else), by which
perturbations placed from calibrated positions extend their bands and masks. Regenerate both with

    python -m fbench.data.calibrate            # 40 faces per pose at 762 x 562, seed 0: a few minutes on 2 cores

and paste the printed tables over ``CALIBRATED_TABLE`` and ``CALIBRATED_SPREAD`` there. The tests
(``tests/data/test_landmarks.py``) measure the table's error, and whether bands and masks placed by it reach
the true points, on other faces (another seed, a smaller size) with :func:`measure`.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from fbench.data.faces import FALLBACK, fallback_square, landmarks_in_crop, locate_face
from fbench.data.synth.build import KDEF_EXPRESSIONS, SEXES, render_sample
from fbench.data.table import KDEF_POSES

KDEF_SIZE = (762, 562)  # height, width of a KDEF photograph
MIN_SAMPLES = 5  # a (method, pose) seen fewer times is left out of the table
SPREAD_PERCENTILE = 95  # the spread: this percentile of each landmark's absolute offset from its median, per axis,
OUTLIER_FACTOR = 3.0    # over the faces whose largest offset is at most this many times the group's median one


@dataclass(frozen=True)
class Measured:
    """One synthetic face cropped as a real one: its pose, the method that made the crop, the true landmarks in
    that crop and in the fixed per-pose box (both normalised, 6 x 2), the face's visible width in the crop
    (normalised), and the image with its true landmarks in pixels (for coverage checks)."""

    pose: str
    how: str
    landmarks: np.ndarray
    fallback_landmarks: np.ndarray
    face_width: float
    image: np.ndarray
    true_pixels: np.ndarray


def faces(count: int, seed: int) -> Iterator[tuple[str, int, int, str]]:
    """``count`` (sex, number, session, expression) coordinates of the synthetic set, varied over all four."""
    for i in range(count):
        yield SEXES[i % 2], 1 + i // 2 % 40, (i // 80) % 2, KDEF_EXPRESSIONS[(i * 3 + seed) % len(KDEF_EXPRESSIONS)]


def measure_one(seed: int, sex: str, number: int, session: int, expression: str, pose: str,
                size: tuple[int, int] = KDEF_SIZE) -> Measured:
    """Render one synthetic face and crop it with the real-image policy."""
    import cv2

    rendered, _ = render_sample(seed, sex, number, session, expression, pose, size)
    gray = cv2.cvtColor(rendered.image, cv2.COLOR_RGB2GRAY)
    square, how = locate_face(gray, pose)
    fixed = fallback_square(pose, *gray.shape)
    x0, _y0, x1, _y1 = rendered.box
    return Measured(pose, how, landmarks_in_crop(rendered.landmarks, square),
                    landmarks_in_crop(rendered.landmarks, fixed), float((x1 - x0) / square.side), rendered.image,
                    np.asarray(rendered.landmarks, np.float64))


def _measure_star(args: tuple) -> Measured:
    import cv2

    cv2.setNumThreads(1)
    return measure_one(*args)


def measure(per_pose: int, seed: int, size: tuple[int, int] = KDEF_SIZE, poses: tuple[str, ...] = KDEF_POSES,
            workers: int = 1) -> list[Measured]:
    """``per_pose`` synthetic faces per pose, rendered at ``size`` and cropped as real images are."""
    # Face by face, all poses of one together: the synthetic renderer builds each head once for its poses.
    jobs = [(seed, sex, number, session, expression, pose, size)
            for sex, number, session, expression in faces(per_pose, seed) for pose in poses]
    if workers <= 1:
        measured = [_measure_star(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            measured = list(pool.map(_measure_star, jobs, chunksize=len(poses)))
    return sorted(measured, key=lambda m: poses.index(m.pose))


Table = dict[str, dict[str, tuple[tuple[float, float], ...]]]


def fit(measured: list[Measured], percentile: float = SPREAD_PERCENTILE, outlier: float = OUTLIER_FACTOR
        ) -> tuple[Table, Table]:
    """The median normalised position of every landmark, per crop method and pose (the methods seen at least
    ``MIN_SAMPLES`` times, and the fixed box, ``FALLBACK``, measured on every face), and the spread around it:
    the ``percentile``-th percentile of the absolute offset from the median, per axis, over the faces the crop
    framed as it frames most (a face whose largest offset is over ``outlier`` times the group's median one is a
    detection on something else: no padding short of the whole face would reach its points)."""
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for m in measured:
        if m.how != FALLBACK:
            groups.setdefault((m.how, m.pose), []).append(m.landmarks)
        groups.setdefault((FALLBACK, m.pose), []).append(m.fallback_landmarks)
    table: Table = {}
    spread: Table = {}
    for (how, pose), points in sorted(groups.items()):
        if len(points) >= MIN_SAMPLES:
            stacked = np.stack(points)
            median = np.median(stacked, axis=0)
            offsets = np.abs(stacked - median)
            largest = offsets.max(axis=(1, 2))
            framed = offsets[largest <= outlier * np.median(largest)]
            offset = np.percentile(framed, percentile, axis=0)
            table.setdefault(how, {})[pose] = tuple((round(float(x), 3), round(float(y), 3)) for x, y in median)
            spread.setdefault(how, {})[pose] = tuple((round(float(x), 3), round(float(y), 3)) for x, y in offset)
    return table, spread


def _table_lines(name: str, table: Table) -> list[str]:
    lines = [f"{name}: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {{"]
    for how, poses in table.items():
        lines.append(f'    "{how}": {{')
        for pose in [p for p in KDEF_POSES if p in poses]:
            points = ", ".join(f"({x}, {y})" for x, y in poses[pose])
            lines.append(f'        "{pose}": ({points}),')
        lines.append("    },")
    lines.append("}")
    return lines


def table_source(table: Table, spread: Table, counts: dict[str, int], inputs: str,
                 percentile: float = SPREAD_PERCENTILE, outlier: float = OUTLIER_FACTOR) -> str:
    """The tables (positions, then spreads) as Python source, with the date, inputs and command in a comment."""
    command = " ".join(["python -m fbench.data.calibrate", *sys.argv[1:]])
    text = (f"Fitted {datetime.date.today().isoformat()} by `{command}` ({inputs}) on synthetic faces cropped as "
            "real ones; faces per method/pose: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")
    lines = [f"# {line}" for line in textwrap.wrap(text, 114)]
    lines += _table_lines("CALIBRATED_TABLE", table)
    text = (f"The spread around them: the {percentile:g}th percentile of each landmark's absolute offset from its "
            f"median, per axis, over the faces whose largest offset is at most {outlier:g} times the median one.")
    lines += [f"# {line}" for line in textwrap.wrap(text, 114)]
    lines += _table_lines("CALIBRATED_SPREAD", spread)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fbench.data.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--per-pose", type=int, default=40, help="synthetic faces per pose (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic set seed (default 0)")
    parser.add_argument("--size", nargs=2, type=int, default=KDEF_SIZE, metavar=("H", "W"),
                        help="image height and width (default KDEF's 762 562)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--percentile", type=float, default=SPREAD_PERCENTILE,
                        help=f"the spread's percentile of the absolute offsets (default {SPREAD_PERCENTILE})")
    parser.add_argument("--outlier", type=float, default=OUTLIER_FACTOR,
                        help="leave out of the spread the faces whose largest offset is over this many times the "
                             f"median one (default {OUTLIER_FACTOR:g})")
    args = parser.parse_args(argv)
    measured = measure(args.per_pose, args.seed, (args.size[0], args.size[1]), workers=args.workers)
    counts: dict[str, int] = {}
    for m in measured:
        counts[f"{m.how}/{m.pose}"] = counts.get(f"{m.how}/{m.pose}", 0) + 1
    inputs = f"{args.per_pose} faces per pose, seed {args.seed}, {args.size[0]} x {args.size[1]}"
    print(table_source(*fit(measured, args.percentile, args.outlier), counts, inputs, args.percentile, args.outlier))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
