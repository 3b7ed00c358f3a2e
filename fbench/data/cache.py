"""The decoded-image cache: decode once, crop the face, resize to the model's input, store as uint8.

A cache is a folder keyed by a hash of the dataset's contents (sample ids, labels, file sizes and times, or the
pixel array), the crop policy and the target size. It holds ``images.npy`` (N x C x H x W uint8),
``landmarks.npy`` (N x 6 x 2 float32, normalised to the cached image, NaN where unknown), ``samples.csv`` (id,
label, pose) and ``meta.json``. It is written to a temporary folder and renamed into place when complete, so an
interrupted build leaves nothing half-written; every later cell and run that asks for the same thing reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from fbench.data.adapter import DatasetAdapter
from fbench.data.faces import Square, crop_square, detect_face, landmarks_in_crop, resize, to_channels
from fbench.data.images import UnreadableImageError
from fbench.data.table import BOX_COLUMNS, LANDMARK_COLUMNS, LANDMARKS, SampleTable
from fbench.errors import FbenchError
from fbench.registry import get_dataset

CACHE_VERSION = 1
Crop = Literal["box", "haar", "none"]


@dataclass
class CachedImages:
    """A dataset decoded at one size: images and what the perturbations and metrics need beside them."""

    images: torch.Tensor  # N x C x H x W uint8
    labels: torch.Tensor  # N int64
    landmarks: torch.Tensor  # N x 6 x 2 float32, NaN where unknown
    sample_ids: list[str]
    poses: list[str]
    key: str
    path: Path
    hit: bool
    meta: dict

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str) -> CachedImages:
        """The same cache with its tensors on ``device`` (done once per cell)."""
        return CachedImages(self.images.to(device), self.labels.to(device), self.landmarks.to(device),
                            self.sample_ids, self.poses, self.key, self.path, self.hit, self.meta)

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


def cache_key(table: SampleTable, size: tuple[int, int, int], crop: Crop) -> str:
    """A hash of everything the cached arrays depend on."""
    digest = hashlib.sha256()
    header = {"version": CACHE_VERSION, "dataset": table.dataset, "root": str(Path(table.root).resolve()),
              "size": list(size), "crop": crop, "rows": len(table)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    columns = ["sample_id", "label", "path", "index", "pose"]
    columns += [c for c in BOX_COLUMNS + LANDMARK_COLUMNS if c in table.frame.columns]
    digest.update(pd.util.hash_pandas_object(table.frame[columns], index=False).to_numpy().tobytes())
    if table.pixels is not None:
        digest.update(hashlib.sha256(np.ascontiguousarray(table.pixels).data).digest())
    for path in table.frame["path"]:
        if path:
            stat = (Path(table.root) / path).stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:20]


def _landmark_array(table: SampleTable) -> np.ndarray:
    if table.has_landmarks:
        return table.frame[list(LANDMARK_COLUMNS)].to_numpy(np.float32).reshape(len(table), len(LANDMARKS), 2)
    return np.full((len(table), len(LANDMARKS), 2), np.nan, np.float32)


def _square(table: SampleTable, row: int, image: np.ndarray, crop: Crop) -> tuple[Square, bool]:
    height, width = image.shape[:2]
    if crop == "box":
        x0, y0, x1, y1 = (float(table.frame.iloc[row][c]) for c in BOX_COLUMNS)
        if not np.isfinite([x0, y0, x1, y1]).all():
            return Square.whole(height, width), False
        return Square.around(x0, y0, x1, y1), True
    if crop == "haar":
        return detect_face(image, str(table.frame.iloc[row]["pose"]))
    return Square.whole(height, width), True


def decode_row(adapter: DatasetAdapter, table: SampleTable, row: int, size: tuple[int, int, int], crop: Crop,
               landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """One row decoded, cropped and resized: (C x H x W uint8, normalised landmarks, face found)."""
    channels, height, width = size
    try:
        image = adapter.read_image(table, row)
    except UnreadableImageError as error:
        raise FbenchError(f"{error} (dataset {table.dataset!r}): the file changed after the dataset was checked "
                          "while loading (or the adapter's verify_images is off); run again to check it, and "
                          "--on-error skip leaves it out") from None
    square, found = _square(table, row, image, crop)
    face = resize(to_channels(crop_square(image, square), channels), height, width)
    return face.transpose(2, 0, 1), landmarks_in_crop(landmarks, square), found


def decode_rows(table: SampleTable, rows: list[int], size: tuple[int, int, int], crop: Crop | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A few rows decoded without caching (previews): N x C x H x W uint8 and N x 6 x 2 landmarks."""
    crop = resolve_crop(table, crop)
    adapter = get_dataset(table.dataset)
    landmarks = _landmark_array(table)
    decoded = [decode_row(adapter, table, row, size, crop, landmarks[row]) for row in rows]
    return (torch.from_numpy(np.stack([d[0] for d in decoded])),
            torch.from_numpy(np.stack([d[1] for d in decoded])))


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


def build_cache(table: SampleTable, size: tuple[int, int, int], crop: Crop | None = None,
                cache_dir: Path | None = None, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                note: Callable[[str], None] = lambda text: None) -> CachedImages:
    """The cache of ``table`` at ``size`` = (channels, height, width): loaded when present and sound, else built
    (a damaged cache is named through ``note`` and built again).

    Unreadable images are errors here: adapters decode-check every file while loading and report or skip the bad
    ones (``on_error``) before a cache is built."""
    crop = resolve_crop(table, crop)
    key = cache_key(table, size, crop)
    channels, height, width = size
    folder = (cache_dir or default_cache_dir()) / f"{table.dataset}-{channels}x{height}x{width}-{crop}-{key}"
    if (folder / "meta.json").is_file():
        damage = cache_damage(folder, (len(table), channels, height, width))
        if damage is None:
            return load_cache(folder)
        note(f"the decode cache {folder} is damaged ({damage}); building it again")
        shutil.rmtree(folder, ignore_errors=True)

    adapter = get_dataset(table.dataset)
    landmarks = _landmark_array(table)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        images = np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(table), channels, height, width))
        cropped_landmarks = np.full_like(landmarks, np.nan)
        found = np.zeros(len(table), dtype=bool)

        def decode(row: int) -> int:
            images[row], cropped_landmarks[row], found[row] = decode_row(adapter, table, row, size, crop,
                                                                          landmarks[row])
            return row

        done = 0
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            for _ in pool.map(decode, range(len(table))):
                done += 1
                if progress is not None:
                    progress(done, len(table))
        images.flush()
        np.save(staging / "landmarks.npy", cropped_landmarks)
        table.frame[["sample_id", "label", "pose"]].to_csv(staging / "samples.csv", index=False)
        meta = {"key": key, "version": CACHE_VERSION, "dataset": table.dataset, "root": str(table.root),
                "size": list(size), "crop": crop, "count": len(table), "synthetic": table.synthetic,
                "faces_found": int(found.sum()), "fallback_crops": int((~found).sum())}
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
