"""Reading image files into uint8 arrays, with errors that name the file, and checking that a dataset's files
decode (:func:`check_image_files`, cached on disk so that a second run does not decode them again)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fbench.errors import FbenchError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Why a file does not decode: the reasons :func:`image_problem` gives.
MISSING_FILE = "missing image"
EMPTY_FILE = "empty file"
TRUNCATED_IMAGE = "truncated image"
NOT_AN_IMAGE = "not an image"
UNREADABLE_FILE = "unreadable image"
IMAGE_PROBLEMS = (MISSING_FILE, EMPTY_FILE, TRUNCATED_IMAGE, NOT_AN_IMAGE, UNREADABLE_FILE)
CHECK_VERSION = 1
CHECK_WORKERS = 2


class UnreadableImageError(FbenchError):
    """An image file that is missing or cannot be decoded."""


def read_image_file(path: Path) -> np.ndarray:
    """Decode an image file to uint8 H x W x 3 RGB (grayscale files stay H x W)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise UnreadableImageError(f"image {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UnreadableImageError(f"image {str(path)!r} cannot be decoded ({error}); replace or remove it") from None


def read_image_reduced(path: Path, reduction: Callable[[int, int], int], gray: bool = False
                       ) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` at a reduced size where the format allows it cheaply (JPEG: 1/2, 1/4 or 1/8 inside the
    decoder, PIL's draft mode), reduced at most ``reduction(height, width)`` times for a full image of that size.
    Returns the pixels (uint8 H x W x 3 RGB, or H x W when ``gray`` or the file is grayscale; ITU-R 601 luma) and
    the full image's (height, width). Other formats decode at full size."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            factor = max(1, int(reduction(height, width)))
            if factor > 1 and image.format == "JPEG":
                image.draft("L" if gray else "RGB", (max(1, width // factor), max(1, height // factor)))
            image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            if gray and image.mode != "L":
                image = image.convert("L")
            return np.asarray(image, dtype=np.uint8), (height, width)
    except FileNotFoundError:
        raise UnreadableImageError(f"image {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UnreadableImageError(f"image {str(path)!r} cannot be decoded ({error}); replace or remove it") from None


def image_problem(path: Path) -> str | None:
    """Why ``path`` does not decode (one of ``IMAGE_PROBLEMS``), or None when it decodes in full.

    PIL's ``verify`` (structure and checksums, where the format has them) and then a full ``load`` of the pixels:
    a truncated JPEG passes ``verify`` and fails ``load``."""
    try:
        if path.stat().st_size == 0:
            return EMPTY_FILE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        return MISSING_FILE
    except UnidentifiedImageError:
        return NOT_AN_IMAGE
    except PermissionError:
        return UNREADABLE_FILE
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # PIL's decoders raise these for broken data
        text = str(error).lower()
        return TRUNCATED_IMAGE if "truncated" in text or "premature end" in text or "broken data" in text \
            else UNREADABLE_FILE
    except Exception:  # noqa: BLE001 - a decoder plugin may raise anything on hostile data; it means "cannot decode"
        return UNREADABLE_FILE
    return None


def check_key(root: Path, paths: Sequence[str]) -> str:
    """A hash of the files a check covers: the root, each relative path, its size and modification time."""
    digest = hashlib.sha256(json.dumps([CHECK_VERSION, str(root.resolve()), len(paths)]).encode())
    for relative in paths:
        try:
            stat = (root / relative).stat()
            digest.update(f"{relative}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        except OSError:
            digest.update(f"{relative}:absent;".encode())
    return digest.hexdigest()[:20]


def check_image_files(root: Path, paths: Sequence[str], store: Path | None = None,
                      workers: int = CHECK_WORKERS) -> dict[str, str]:
    """The files of ``paths`` (relative to ``root``) that do not decode, as {path: reason}; {} when all do.

    Decodes every file on ``workers`` threads (PIL's decoders release the GIL). With ``store`` (a folder), the
    result is kept in ``store/checked-<key>.json`` keyed by the files' paths, sizes and times, and a later check of
    the same files reads it instead of decoding again."""
    record = store / f"checked-{check_key(root, paths)}.json" if store is not None else None
    if record is not None and record.is_file():
        try:
            bad = json.loads(record.read_text())["bad"]
            if isinstance(bad, dict):
                return {str(k): str(v) for k, v in bad.items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged record: check again and rewrite it
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(lambda relative: image_problem(root / relative), paths))
    bad = {relative: problem for relative, problem in zip(paths, problems) if problem is not None}
    if record is not None:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            handle, staging = tempfile.mkstemp(prefix=f".{record.name}.", dir=record.parent)
            with os.fdopen(handle, "w") as out:
                json.dump({"root": str(root), "files": len(paths), "bad": bad}, out)
            os.replace(staging, record)
        except OSError:
            pass  # an unwritable cache folder only costs the next run a second check
    return bad
