"""The decoded-image cache: decode once, crop, resize, store; a second build is a hit; nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fbench.data.cache import build_cache, cache_key, decode_rows
from fbench.data.faces import Square, crop_square, detect_face, landmarks_in_crop
from fbench.data.table import BOX_COLUMNS, LANDMARK_COLUMNS
from fbench.errors import FbenchError


def _write_faces(root: Path, count: int = 6, size: tuple[int, int] = (40, 30)) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i % 7}_{i:03d}.png")


def test_second_build_is_a_hit_without_decoding(tmp_path, png_adapter, monkeypatch):
    _write_faces(tmp_path / "set")
    table = png_adapter.load(tmp_path / "set")
    first = build_cache(table, (1, 16, 16), cache_dir=tmp_path / "cache")
    assert not first.hit and first.images.shape == (6, 1, 16, 16) and first.images.dtype == torch.uint8

    def refuse(*args, **kwargs):
        raise AssertionError("a cache hit must not decode images")

    monkeypatch.setattr(type(png_adapter), "read_image", refuse)
    second = build_cache(table, (1, 16, 16), cache_dir=tmp_path / "cache")
    assert second.hit and second.key == first.key
    assert torch.equal(second.images, first.images)
    assert second.sample_ids == table.frame["sample_id"].tolist()
    assert second.labels.tolist() == table.frame["label"].tolist()


def test_key_follows_contents_size_and_crop(tmp_path, png_adapter):
    _write_faces(tmp_path / "set")
    table = png_adapter.load(tmp_path / "set")
    key = cache_key(table, (1, 16, 16), "none")
    assert cache_key(table, (3, 16, 16), "none") != key
    assert cache_key(table, (1, 16, 16), "haar") != key
    Image.fromarray(np.zeros((40, 31, 3), np.uint8)).save(tmp_path / "set" / "0_000.png")
    assert cache_key(png_adapter.load(tmp_path / "set"), (1, 16, 16), "none") != key


def test_cached_pixels_are_the_resized_image(tmp_path, png_adapter):
    root = tmp_path / "set"
    root.mkdir()
    gradient = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    Image.fromarray(np.stack([gradient] * 3, axis=2)).save(root / "1_a.png")
    cached = build_cache(png_adapter.load(root), (3, 16, 16), cache_dir=tmp_path / "cache")
    image = cached.images[0].float()
    assert torch.all(image[0, :, 1:] >= image[0, :, :-1])  # left-to-right gradient kept
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_box_crop_and_landmarks(tmp_path, png_adapter):
    root = tmp_path / "set"
    root.mkdir()
    pixels = np.zeros((100, 80, 3), np.uint8)
    pixels[30:60, 20:50] = 255  # the "face"
    Image.fromarray(pixels).save(root / "2_face.png")
    table = png_adapter.load(root)
    table.frame[list(BOX_COLUMNS)] = [[20.0, 30.0, 50.0, 60.0]]
    for column in LANDMARK_COLUMNS:
        table.frame[column] = 35.0 if column.endswith("_x") else 45.0  # the box centre
    cached = build_cache(table, (1, 20, 20), crop="box", cache_dir=tmp_path / "cache")
    face = cached.images[0, 0].float()
    assert face[10, 10] == 255 and face[0, 0] == 0  # box centred, margin around it
    assert torch.allclose(cached.landmarks[0, :, :2], torch.full((6, 2), 0.5))
    assert torch.equal(cached.landmarks[0, :, 2:], torch.zeros(6, 2))  # recorded: exact, no uncertainty


def test_crop_box_without_boxes_is_an_error(tmp_path, png_adapter):
    _write_faces(tmp_path / "set")
    with pytest.raises(FbenchError, match="no face boxes"):
        build_cache(png_adapter.load(tmp_path / "set"), (1, 8, 8), crop="box", cache_dir=tmp_path / "cache")


def test_interrupted_build_leaves_nothing(tmp_path, png_adapter, monkeypatch):
    _write_faces(tmp_path / "set")
    table = png_adapter.load(tmp_path / "set")
    calls = {"n": 0}
    original = type(png_adapter).read_image

    def flaky(self, table, row):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, table, row)

    monkeypatch.setattr(type(png_adapter), "read_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache(table, (1, 8, 8), cache_dir=tmp_path / "cache", workers=1)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(type(png_adapter), "read_image", original)
    assert not build_cache(table, (1, 8, 8), cache_dir=tmp_path / "cache").hit


def test_unreadable_image_names_the_file(tmp_path, png_adapter):
    _write_faces(tmp_path / "set")
    (tmp_path / "set" / "3_broken.png").write_bytes(b"not a png")
    with pytest.raises(FbenchError, match="3_broken.png.*--on-error skip"):
        build_cache(png_adapter.load(tmp_path / "set"), (1, 8, 8), cache_dir=tmp_path / "cache")


def test_positions_and_device(tmp_path, png_adapter):
    _write_faces(tmp_path / "set")
    cached = build_cache(png_adapter.load(tmp_path / "set"), (1, 8, 8), cache_dir=tmp_path / "cache").to("cpu")
    ids = cached.sample_ids
    assert cached.positions([ids[3], ids[0]]).tolist() == [3, 0]
    with pytest.raises(FbenchError, match="not in the cache"):
        cached.positions(["nope.png"])


def test_decode_rows_for_previews(tmp_path, png_adapter):
    _write_faces(tmp_path / "set")
    images, landmarks = decode_rows(png_adapter.load(tmp_path / "set"), [0, 2], (3, 12, 12))
    assert images.shape == (2, 3, 12, 12) and torch.isnan(landmarks).all()


def test_crop_square_pads_outside_the_image():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    crop = crop_square(image, Square(-1, -1, 3))
    assert crop.shape == (3, 3) and crop[0, 0] == image[0, 0] and crop[1, 1] == image[0, 0]
    assert np.allclose(landmarks_in_crop(np.array([[0.5, 0.5]]), Square(-1, -1, 3)), [[0.5, 0.5]])


def test_haar_falls_back_to_the_pose_crop_on_a_blank_image():
    square, found = detect_face(np.full((200, 150, 3), 128, np.uint8), pose="FL")
    assert not found and square.side > 0
