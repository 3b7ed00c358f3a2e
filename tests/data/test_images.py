"""The decode check: each kind of bad file gets its reason, every bad file is named, and the result is cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbench.data import images
from fbench.data.images import (
    EMPTY_FILE,
    MISSING_FILE,
    NOT_AN_IMAGE,
    TRUNCATED_IMAGE,
    check_image_files,
    image_problem,
)
from fbench.errors import FbenchError
from fbench.registry import get_dataset


def noisy_jpeg(path: Path, seed: int = 0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path.read_bytes()


def bad_folder(root: Path) -> Path:
    """An image folder with two good JPEGs per class and one truncated, one empty and one non-image file."""
    for label in ("happy", "sad"):
        for i in range(2):
            noisy_jpeg(root / label / f"{i}.jpg", seed=i)
    data = noisy_jpeg(root / "happy" / "cut.jpg")
    (root / "happy" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "sad" / "empty.jpg").write_bytes(b"")
    (root / "sad" / "text.jpg").write_text("not an image")
    return root


def test_image_problem_reasons(tmp_path):
    root = bad_folder(tmp_path)
    assert image_problem(root / "happy" / "0.jpg") is None
    assert image_problem(root / "happy" / "cut.jpg") == TRUNCATED_IMAGE
    assert image_problem(root / "sad" / "empty.jpg") == EMPTY_FILE
    assert image_problem(root / "sad" / "text.jpg") == NOT_AN_IMAGE
    assert image_problem(root / "sad" / "gone.jpg") == MISSING_FILE


def test_check_is_cached_until_a_file_changes(tmp_path, monkeypatch):
    root = bad_folder(tmp_path / "data")
    paths = ["happy/0.jpg", "happy/cut.jpg", "sad/empty.jpg"]
    store = tmp_path / "store"
    expected = {"happy/cut.jpg": TRUNCATED_IMAGE, "sad/empty.jpg": EMPTY_FILE}
    assert check_image_files(root, paths, store=store) == expected
    assert len(list(store.glob("checked-*.json"))) == 1
    calls = []
    monkeypatch.setattr(images, "image_problem", lambda path: calls.append(path))
    assert check_image_files(root, paths, store=store) == expected  # read from the record, nothing decoded
    assert calls == []
    (root / "sad" / "empty.jpg").write_bytes(b"x")  # a changed file: checked again
    check_image_files(root, paths, store=store)
    assert len(calls) == 3


def test_loading_names_every_bad_file_or_skips_them(tmp_path):
    root = bad_folder(tmp_path)
    adapter = get_dataset("imagefolder")
    with pytest.raises(FbenchError) as raised:
        adapter.load(root, on_error="raise")
    message = str(raised.value)
    assert "3 bad sample(s)" in message
    for where in ("1 truncated image (happy/cut.jpg)", "1 empty file (sad/empty.jpg)", "1 not an image (sad/text.jpg)"):
        assert where in message
    table = adapter.load(root, on_error="skip")
    assert len(table) == 4
    assert table.report.skipped == {TRUNCATED_IMAGE: ["happy/cut.jpg"], EMPTY_FILE: ["sad/empty.jpg"],
                                    NOT_AN_IMAGE: ["sad/text.jpg"]}
