"""Reading image files into uint8 arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fbench.errors import FbenchError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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
