"""The decoded-image cache: decode once, crop the face, resize to the model's input, store as uint8.

A cache is a folder keyed by a hash of the dataset's contents (sample ids, labels, file sizes and times, or the
pixel array), the crop policy, the landmark model (or its absence) and the target size. It holds ``images.npy``
(N x C x H x W uint8), ``landmarks.npy`` (N x 6 x 4 float32: x, y normalised to the cached image, NaN where
unknown, and the half-widths of their uncertainty along x and y, see :func:`fbench.data.placement.place_landmarks`),
``samples.csv`` (id, label, pose, landmark_source: see :mod:`fbench.data.placement`) and ``meta.json`` (with
``detections``: how many crops each method made, see :data:`fbench.data.decode.METHODS`; ``landmark_sources``:
per pose, how many faces have model, recorded, calibrated or canonical landmarks). It is written to a temporary
folder and renamed into place when complete, so an interrupted build leaves nothing half-written; every later cell
and run that asks for the same thing reuses it.

Building is fast: JPEGs decode at reduced size, faces are found on a small copy, the work runs in worker processes
(threads for small sets), and Haar detections are kept apart from the target size (:mod:`fbench.data.boxes`), so
a second size does not detect again.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from fbench.data.adapter import DatasetAdapter
from fbench.data.boxes import FaceBoxes, boxes_folder, content_digest, load_boxes, method_counts, save_boxes
from fbench.data.decode import BOX, FOUND, MISSING_BOX, WHOLE_IMAGE, Face, FaceJob, init_worker, prepare_face
from fbench.data.faces import Square
from fbench.data.images import UnreadableImageError
from fbench.data.landmarker import available_model, missing_reason
from fbench.data.placement import CANONICAL, RECORDED, place_landmarks, source_counts
from fbench.data.table import BOX_COLUMNS, LANDMARK_COLUMNS, LANDMARKS, SampleTable
from fbench.errors import FbenchError
from fbench.registry import get_dataset

CACHE_VERSION = 4  # 2: reduced-size decoding and detection, "detections" in meta.json; 3: landmark sources;
# 4: landmark uncertainty (N x 6 x 4 landmarks)
# Below this many images a build runs on threads: starting worker processes costs more than they save.
PROCESS_MIN_IMAGES = 1000
Crop = Literal["box", "haar", "none"]


@dataclass
class CachedImages:
    """A dataset decoded at one size: images and what the perturbations and metrics need beside them."""

    images: torch.Tensor  # N x C x H x W uint8
    labels: torch.Tensor  # N int64
    landmarks: torch.Tensor  # N x 6 x 4 float32: x, y (NaN where unknown), uncertainty half-widths along x, y
    sample_ids: list[str]
    poses: list[str]
    key: str
    path: Path
    hit: bool
    meta: dict
    landmark_sources: list[str] = field(default_factory=list)  # per row: see fbench.data.placement.SOURCES

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str) -> CachedImages:
        """The same cache with its tensors on ``device`` (done once per cell)."""
        return CachedImages(self.images.to(device), self.labels.to(device), self.landmarks.to(device),
                            self.sample_ids, self.poses, self.key, self.path, self.hit, self.meta,
                            self.landmark_sources)

    def positions(self, sample_ids: list[str] | tuple[str, ...]) -> torch.Tensor:
        """Row positions of ``sample_ids`` (e.g. a split's train part) in this cache."""
        where = {sample_id: i for i, sample_id in enumerate(self.sample_ids)}
        missing = [s for s in sample_ids if s not in where]
        if missing:
            raise FbenchError(f"{len(missing)} samples are not in the cache {self.path} (e.g. {missing[:3]}); "
                              "the dataset changed since the split was made: rebuild the split")
        return torch.tensor([where[s] for s in sample_ids], dtype=torch.long)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FBENCH_CACHE", Path.home() / ".cache" / "fbench")).expanduser()


def resolve_crop(table: SampleTable, crop: Crop | None) -> Crop:
    """The crop policy: the one asked for, else the table's, else the adapter's default."""
    if crop is not None:
        chosen = crop
    elif "crop" in table.meta:
        chosen = table.meta["crop"]
    else:
        chosen = get_dataset(table.dataset).default_crop
    if chosen == "box" and not all(c in table.frame.columns for c in BOX_COLUMNS):
        raise FbenchError(f"dataset {table.dataset!r} has no face boxes; use crop 'haar' or 'none'")
    if chosen not in ("box", "haar", "none"):
        raise FbenchError(f"unknown crop {chosen!r}; use box, haar or none")
    return chosen


def landmark_model(crop: Crop) -> str | None:
    """The landmark model a crop policy runs: the installed one for detected crops ("haar"), else None."""
    return available_model() if crop == "haar" else None


def cache_key(table: SampleTable, size: tuple[int, int, int], crop: Crop) -> str:
    """A hash of everything the cached arrays depend on."""
    header = {"version": CACHE_VERSION, "dataset": table.dataset, "root": str(Path(table.root).resolve()),
              "size": list(size), "crop": crop, "rows": len(table), "landmark_model": landmark_model(crop)}
    return content_digest(table, header)


def _landmark_array(table: SampleTable) -> np.ndarray:
    if table.has_landmarks:
        return table.frame[list(LANDMARK_COLUMNS)].to_numpy(np.float32).reshape(len(table), len(LANDMARKS), 2)
    return np.full((len(table), len(LANDMARKS), 2), np.nan, np.float32)


def face_jobs(table: SampleTable, size: tuple[int, int, int], crop: Crop, boxes: FaceBoxes | None = None,
              rows: list[int] | None = None) -> list[FaceJob]:
    """What to make of each row (or of ``rows``) at ``size``: the recorded box (crop "box"), the whole image
    ("none"), the cached detection (``boxes``, of every row) or a detection to run ("haar", with the installed
    landmark model)."""
    frame = table.frame if rows is None else table.frame.iloc[rows]
    if boxes is not None and rows is not None:
        boxes = FaceBoxes(boxes.squares[rows], [boxes.how[r] for r in rows], boxes.folder, boxes.landmarks[rows])
    root = Path(table.root)
    paths = [str(root / p) if p else "" for p in frame["path"].astype(str)]
    poses = frame["pose"].astype(str).tolist()
    if crop == "box":
        corners = frame[list(BOX_COLUMNS)].to_numpy(np.float64)
        jobs = []
        for path, pose, box in zip(paths, poses, corners):
            if np.isfinite(box).all():
                square = Square.around(*(float(v) for v in box))
                jobs.append(FaceJob(path, pose, size, (square.x0, square.y0, square.side), BOX))
            else:
                jobs.append(FaceJob(path, pose, size, None, MISSING_BOX))
        return jobs
    if crop == "none":
        return [FaceJob(path, pose, size, None, WHOLE_IMAGE) for path, pose in zip(paths, poses)]
    if boxes is not None:
        return [FaceJob(path, pose, size, (float(x0), float(y0), float(side)), how)
                for path, pose, (x0, y0, side), how in zip(paths, poses, boxes.squares, boxes.how)]
    model = landmark_model(crop)
    return [FaceJob(path, pose, size, model=model) for path, pose in zip(paths, poses)]


def detection_counts(table: SampleTable, crop: Crop | None = None, cache_dir: Path | None = None
                     ) -> dict[str, int] | None:
    """How the face crops of ``table`` are made, counted by method: for crop "haar", the detections of an earlier
    preparation (None when there was none yet); for "box" and "none", read off the table."""
    crop = resolve_crop(table, crop)
    if crop == "haar":
        boxes = _earlier_boxes(table, crop, cache_dir)
        return boxes.counts if boxes is not None else None
    if crop == "box":
        boxed = int(np.isfinite(table.frame[list(BOX_COLUMNS)].to_numpy(np.float64)).all(axis=1).sum())
        return method_counts([BOX] * boxed + [MISSING_BOX] * (len(table) - boxed))
    return method_counts([WHOLE_IMAGE] * len(table))


def _earlier_boxes(table: SampleTable, crop: Crop, cache_dir: Path | None) -> FaceBoxes | None:
    try:
        return load_boxes(boxes_folder(table, crop, cache_dir or default_cache_dir(), landmark_model(crop)), len(table))
    except OSError:  # a file gone since the table was read: nothing to say about its crops
        return None


def landmark_counts(table: SampleTable, crop: Crop | None = None, cache_dir: Path | None = None
                    ) -> dict[str, dict[str, int]] | None:
    """Where the landmarks of ``table`` come from, per pose (:func:`fbench.data.placement.source_counts`): for
    crop "haar", from the detections of an earlier preparation (None when there was none yet); else read off
    the table (recorded where it has landmarks, canonical elsewhere)."""
    crop = resolve_crop(table, crop)
    recorded = _landmark_array(table)
    poses = table.frame["pose"].astype(str).tolist()
    if crop != "haar":
        return source_counts(poses, [RECORDED if np.isfinite(points).any() else CANONICAL for points in recorded])
    boxes = _earlier_boxes(table, crop, cache_dir)
    if boxes is None:
        return None
    return source_counts(poses, [place_landmarks(points, model, Square(*square), how, pose)[1] for
                                 points, model, square, how, pose in
                                 zip(recorded, boxes.landmarks, boxes.squares, boxes.how, poses)])


def _reads_files(adapter: DatasetAdapter, table: SampleTable) -> bool:
    """Whether every row is a file read the standard way (so it can be decoded at reduced size, in any process)."""
    return type(adapter).read_image is DatasetAdapter.read_image and bool((table.frame["index"] < 0).all())


def _unreadable(error: UnreadableImageError, table: SampleTable) -> FbenchError:
    return FbenchError(f"{error} (dataset {table.dataset!r}): the file changed after the dataset was checked "
                       "while loading (or the adapter's verify_images is off); run again to check it, and "
                       "--on-error skip leaves it out")


def _prepare_row(adapter: DatasetAdapter, table: SampleTable, row: int, job: FaceJob, fast: bool) -> Face:
    try:
        return prepare_face(job) if fast else prepare_face(job, adapter.read_image(table, row))
    except UnreadableImageError as error:
        raise _unreadable(error, table) from None


def decode_rows(table: SampleTable, rows: list[int], size: tuple[int, int, int], crop: Crop | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A few rows decoded without caching: N x C x H x W uint8 and N x 6 x 2 landmarks (their positions only)."""
    images, landmarks, _ = decode_placed(table, rows, size, crop)
    return images, landmarks[..., :2]


def decode_placed(table: SampleTable, rows: list[int], size: tuple[int, int, int], crop: Crop | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """:func:`decode_rows` with the landmarks as a cache build places them (N x 6 x 4: with their uncertainty)
    and each row's landmark source."""
    crop = resolve_crop(table, crop)
    adapter = get_dataset(table.dataset)
    landmarks = _landmark_array(table)
    fast = _reads_files(adapter, table)
    jobs = face_jobs(table, size, crop, rows=rows)
    faces = [_prepare_row(adapter, table, row, job, fast) for row, job in zip(rows, jobs)]
    placed = [place_landmarks(landmarks[row], face.landmarks, Square(*face.square), face.how, job.pose)
              for row, face, job in zip(rows, faces, jobs)]
    return (torch.from_numpy(np.stack([face.pixels for face in faces])),
            torch.from_numpy(np.stack([points for points, _ in placed])), [source for _, source in placed])


def load_cache(path: Path) -> CachedImages:
    meta = json.loads((path / "meta.json").read_text())
    samples = pd.read_csv(path / "samples.csv", dtype={"sample_id": str, "pose": str}, keep_default_na=False)
    images = np.load(path / "images.npy", mmap_mode="c")  # copy-on-write: no read until used
    return CachedImages(
        images=torch.from_numpy(images),
        labels=torch.tensor(samples["label"].to_numpy(np.int64)),
        landmarks=torch.from_numpy(np.load(path / "landmarks.npy")),
        sample_ids=samples["sample_id"].tolist(),
        poses=samples["pose"].tolist(),
        key=meta["key"],
        path=path,
        hit=True,
        meta=meta,
        landmark_sources=(samples["landmark_source"].astype(str).tolist() if "landmark_source" in samples.columns
                          else [CANONICAL] * len(samples)),
    )


def cache_damage(folder: Path, shape: tuple[int, int, int, int]) -> str | None:
    """What is wrong with a cache folder (a truncated or unreadable array, a shape or count that does not match
    ``shape``), or None when it is sound. Reads the arrays' headers and sizes, not the pixels."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
        landmarks = np.load(folder / "landmarks.npy")
        samples = pd.read_csv(folder / "samples.csv")
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as error:
        return f"{type(error).__name__}: {error}"
    if tuple(images.shape) != shape or images.dtype != np.uint8:
        return f"images.npy holds {tuple(images.shape)} {images.dtype}, expected {shape} uint8"
    if len(landmarks) != shape[0] or len(samples) != shape[0] or meta.get("count") != shape[0]:
        return f"landmarks, samples or meta do not count {shape[0]} images"
    return None


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _executor(workers: int, processes: bool) -> Executor:
    if processes:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker)
    return ThreadPoolExecutor(workers)


def _prepare_rows(adapter: DatasetAdapter, table: SampleTable, jobs: list[FaceJob], workers: int,
                  processes: bool | None) -> Iterator[Face]:
    """Every job's face, in row order: in worker processes when the rows are plain files, there are enough of
    them and this process may start children (``processes`` None), else on threads (or inline for one worker).
    OpenCV runs one thread per worker meanwhile: the workers are the parallelism."""
    import cv2

    fast = _reads_files(adapter, table)
    if processes is None:
        processes = (fast and workers > 1 and len(jobs) >= PROCESS_MIN_IMAGES
                     and not multiprocessing.current_process().daemon)
    processes = processes and fast
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    pool = _executor(workers, processes) if workers > 1 or processes else None
    try:
        if pool is None:
            faces: Iterator[Face] = (_prepare_row(adapter, table, row, job, fast) for row, job in enumerate(jobs))
        elif processes:
            faces = pool.map(prepare_face, jobs, chunksize=max(1, min(32, len(jobs) // (workers * 8))))
        else:
            faces = pool.map(lambda row: _prepare_row(adapter, table, row, jobs[row], fast), range(len(jobs)))
        try:
            yield from faces
        except UnreadableImageError as error:  # raised in a worker process
            raise _unreadable(error, table) from None
    finally:  # on an error or Ctrl-C, drop the rows not started yet rather than decode them all first
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(threads)


def build_cache(table: SampleTable, size: tuple[int, int, int], crop: Crop | None = None,
                cache_dir: Path | None = None, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                note: Callable[[str], None] = lambda text: None, processes: bool | None = None) -> CachedImages:
    """The cache of ``table`` at ``size`` = (channels, height, width): loaded when present and sound, else built
    (a damaged cache is named through ``note`` and built again).

    ``workers`` (default: every core) decode in worker processes for sets of ``PROCESS_MIN_IMAGES`` files or more
    (``processes`` forces the choice), on threads otherwise. Haar detections are read from, or written to, the
    dataset's boxes folder (:mod:`fbench.data.boxes`). ``meta["detections"]`` counts how each crop was made.

    Unreadable images are errors here: adapters decode-check every file while loading and report or skip the bad
    ones (``on_error``) before a cache is built."""
    crop = resolve_crop(table, crop)
    key = cache_key(table, size, crop)
    channels, height, width = size
    root = cache_dir or default_cache_dir()
    folder = root / f"{table.dataset}-{channels}x{height}x{width}-{crop}-{key}"
    if (folder / "meta.json").is_file():
        damage = cache_damage(folder, (len(table), channels, height, width))
        if damage is None:
            return load_cache(folder)
        note(f"the decode cache {folder} is damaged ({damage}); building it again")
        shutil.rmtree(folder, ignore_errors=True)

    started = time.perf_counter()
    adapter = get_dataset(table.dataset)
    landmarks = _landmark_array(table)
    model = landmark_model(crop)
    if crop == "haar" and model is None:
        note(f"no landmark model ({missing_reason()}); faces get calibrated per-pose landmark positions")
    boxes_place = boxes_folder(table, crop, root, model) if crop == "haar" else None
    boxes = load_boxes(boxes_place, len(table)) if boxes_place is not None else None
    reused = boxes is not None
    jobs = face_jobs(table, size, crop, boxes)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        images = np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(table), channels, height, width))
        cropped_landmarks = np.zeros((len(table), len(LANDMARKS), 4), np.float32)
        squares = np.zeros((len(table), 3), np.float64)
        how: list[str] = [""] * len(table)
        model_points = boxes.landmarks.copy() if boxes is not None else np.full(landmarks.shape, np.nan)
        sources: list[str] = [""] * len(table)
        poses = table.frame["pose"].astype(str).tolist()

        def fill(use_processes: bool | None) -> None:
            if progress is not None:
                progress(0, len(table))
            faces = _prepare_rows(adapter, table, jobs, workers or default_workers(), use_processes)
            for row, face in enumerate(faces):
                images[row] = face.pixels
                squares[row] = face.square
                if face.landmarks is not None:
                    model_points[row] = face.landmarks
                cropped_landmarks[row], sources[row] = place_landmarks(
                    landmarks[row], model_points[row], Square(*face.square), face.how, poses[row])
                how[row] = face.how
                if progress is not None:
                    progress(row + 1, len(table))

        try:
            fill(processes)
        except BrokenProcessPool as error:  # e.g. a script that starts a run without `if __name__ == "__main__":`
            note(f"worker processes stopped ({error}); decoding {table.dataset} on threads instead")
            fill(False)
        images.flush()
        if boxes_place is not None and boxes is None:
            boxes = save_boxes(boxes_place, squares, how, model_points,
                               {"dataset": table.dataset, "root": str(table.root), "crop": crop,
                                "landmark_model": model})
        np.save(staging / "landmarks.npy", cropped_landmarks)
        samples = table.frame[["sample_id", "label", "pose"]].assign(landmark_source=sources)
        samples.to_csv(staging / "samples.csv", index=False)
        found = sum(h in FOUND for h in how)
        seconds = time.perf_counter() - started
        meta = {"key": key, "version": CACHE_VERSION, "dataset": table.dataset, "root": str(table.root),
                "size": list(size), "crop": crop, "count": len(table), "synthetic": table.synthetic,
                "faces_found": found, "fallback_crops": len(table) - found, "detections": method_counts(how),
                "boxes": str(boxes.folder) if boxes is not None else None,
                "boxes_reused": reused,
                "landmark_model": model, "landmark_sources": source_counts(poses, sources),
                "build_seconds": round(seconds, 3)}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    cached = load_cache(folder)
    cached.hit = False
    return cached
