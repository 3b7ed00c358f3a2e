"""Fast dataset preparation: reduced-size decoding, detection on a small copy, face boxes kept apart from the target
size (a second size does not detect again), detection counts in meta.json, and `fbench data prepare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import fbench.data.decode as decode
from fbench.cli import main
from fbench.data.boxes import detection_text
from fbench.data.cache import build_cache, detection_counts
from fbench.data.decode import FaceJob, prepare_face
from fbench.data.faces import Square, crop_square, locate_face, resize
from fbench.data.images import read_image_file, read_image_reduced
from fbench.data.synth.build import render_sample
from fbench.registry import get_dataset


@pytest.fixture(scope="module")
def haar_kdef(tiny_kdef: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 images of the tiny synthetic set without its manifest, so that kdef's default crop (haar) applies."""
    root = tmp_path_factory.mktemp("haar") / "kdef"
    for path in sorted(tiny_kdef.glob("*/*.JPG"))[:14]:
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, root / path.parent.name / path.name)
    return root


def count_detections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The poses Haar detection runs on (with the landmark model, dlib, left out: every row runs Haar)."""
    monkeypatch.setattr("fbench.data.cache.available_model", lambda: None)
    calls: list[str] = []
    original = decode.locate_face

    def counted(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else "")
        return original(*args, **kwargs)

    monkeypatch.setattr(decode, "locate_face", counted)
    return calls


def test_a_second_size_reuses_the_face_boxes(haar_kdef, tmp_path, monkeypatch):
    table = get_dataset("kdef").load(haar_kdef)
    calls = count_detections(monkeypatch)
    first = build_cache(table, (1, 16, 16), cache_dir=tmp_path, workers=2)
    assert len(calls) == len(table) and first.meta["crop"] == "haar" and not first.meta["boxes_reused"]
    boxes = Path(first.meta["boxes"])
    assert boxes.name.startswith("kdef-boxes-haar-") and (boxes / "boxes.npy").is_file()

    calls.clear()
    second = build_cache(table, (3, 24, 24), cache_dir=tmp_path, workers=2)
    assert calls == [] and second.meta["boxes_reused"] and second.meta["boxes"] == str(boxes)
    assert second.meta["detections"] == first.meta["detections"]
    assert not second.hit and second.images.shape == (14, 3, 24, 24)
    # The same crops: the second size's grayscale, shrunk, is close to the first size's.
    gray = second.images.float().mean(dim=1, keepdim=True)
    shrunk = np.stack([cv2.resize(g[0].numpy(), (16, 16), interpolation=cv2.INTER_AREA) for g in gray])
    assert np.abs(shrunk - first.images[:, 0].float().numpy()).mean() < 12

    np.save(boxes / "how.npy", np.zeros(3, np.int8))  # damaged boxes: detected again, not trusted
    calls.clear()
    build_cache(table, (1, 20, 20), cache_dir=tmp_path, workers=1)
    assert len(calls) == len(table)


def test_detection_counts_in_meta_for_every_crop_policy(haar_kdef, tiny_kdef, tmp_path):
    table = get_dataset("kdef").load(haar_kdef)
    assert detection_counts(table, cache_dir=tmp_path) is None  # nothing detected yet
    meta = build_cache(table, (1, 16, 16), cache_dir=tmp_path).meta
    counts = meta["detections"]
    assert set(counts) <= {"dlib", "frontal", "profile", "fallback"} and sum(counts.values()) == len(table)
    assert meta["faces_found"] == counts.get("dlib", 0) + counts.get("frontal", 0) + counts.get("profile", 0)
    assert meta["fallback_crops"] == counts.get("fallback", 0)
    assert detection_counts(table, cache_dir=tmp_path) == counts
    assert json.loads((Path(meta["boxes"]) / "meta.json").read_text())["detections"] == counts

    boxed = get_dataset("kdef").load(tiny_kdef)  # the manifest's boxes: crop "box"
    assert build_cache(boxed, (1, 8, 8), cache_dir=tmp_path).meta["detections"] == {"box": len(boxed)}
    boxed.frame.loc[:2, "box_x0"] = np.nan
    meta = build_cache(boxed, (1, 8, 8), cache_dir=tmp_path).meta
    assert meta["detections"] == {"box": len(boxed) - 3, "missing box": 3} and meta["fallback_crops"] == 3
    assert build_cache(table, (1, 8, 8), crop="none", cache_dir=tmp_path).meta["detections"] == \
        {"whole image": len(table)}
    assert detection_text({"frontal": 3}) == "frontal 3, profile 0, fallback 0"


def _full_resolution_detection(image: np.ndarray, pose: str) -> Square | None:
    """The detector as it was before preparation got fast: both cascades on the full image."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    side = max(24, min(height, width) // 6)
    folder = cv2.data.haarcascades
    frontal = cv2.CascadeClassifier(folder + "haarcascade_frontalface_default.xml")
    profile = cv2.CascadeClassifier(folder + "haarcascade_profileface.xml")
    found = []
    if pose in ("S", "HL", "HR"):
        found = [tuple(map(int, b)) for b in frontal.detectMultiScale(gray, 1.1, 5, minSize=(side, side))]
    if not found:
        found = [tuple(map(int, b)) for b in profile.detectMultiScale(gray, 1.1, 5, minSize=(side, side))]
        found += [(width - int(x) - int(w), int(y), int(w), int(h)) for (x, y, w, h) in
                  profile.detectMultiScale(gray[:, ::-1].copy(), 1.1, 5, minSize=(side, side))]
    if not found:
        return None
    x, y, w, h = max(found, key=lambda b: b[2] * b[3])
    return Square.around(x, y, x + w, y + h)


def _iou(a: Square, b: Square) -> float:
    width = max(0.0, min(a.x0 + a.side, b.x0 + b.side) - max(a.x0, b.x0))
    height = max(0.0, min(a.y0 + a.side, b.y0 + b.side) - max(a.y0, b.y0))
    overlap = width * height
    return overlap / (a.side ** 2 + b.side ** 2 - overlap)


def test_detection_on_a_small_copy_lands_where_full_resolution_does():
    ious, on_face = [], 0
    samples = [("F", 1, "HA", "S"), ("F", 1, "NE", "S"), ("M", 2, "SU", "S"), ("M", 2, "AN", "HL"),
               ("F", 1, "SA", "HR"), ("M", 2, "HA", "FL"), ("F", 1, "DI", "FR")]
    for sex, number, expression, pose in samples:
        rendered, _ = render_sample(0, sex, number, 0, expression, pose, size=(762, 562))
        square, how = locate_face(cv2.cvtColor(rendered.image, cv2.COLOR_RGB2GRAY), pose)
        reference = _full_resolution_detection(rendered.image, pose)
        if reference is not None and how != "fallback":
            ious.append(_iou(square, reference))
        x0, y0, x1, y1 = rendered.box
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        on_face += square.x0 <= centre[0] <= square.x0 + square.side and \
            square.y0 <= centre[1] <= square.y0 + square.side
    assert len(ious) >= 4 and float(np.median(ious)) > 0.8, ious
    assert on_face == len(samples)  # every crop (detected or fallback) holds the face's centre


def test_reduced_decoding_gives_the_same_crop(tmp_path):
    rendered, _ = render_sample(0, "F", 1, 0, "HA", "S", size=(400, 300))
    path = tmp_path / "face.jpg"
    Image.fromarray(rendered.image).save(path, quality=92)
    pixels, full = read_image_reduced(path, lambda h, w: 4, gray=True)
    assert full == (400, 300) and pixels.shape == (100, 75)
    square = Square.around(*(float(v) for v in rendered.box))
    for channels in (1, 3):
        face = prepare_face(FaceJob(str(path), "S", (channels, 32, 32), (square.x0, square.y0, square.side), "box"))
        reference = resize(crop_square(read_image_file(path), square), 32, 32)
        if channels == 1:
            reference = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY)[:, :, None]
        assert face.pixels.shape == (channels, 32, 32) and face.how == "box"
        assert np.abs(face.pixels.transpose(1, 2, 0).astype(float) - reference).mean() < 4
    big = prepare_face(FaceJob(str(path), "S", (1, 160, 160)))  # finer than the detection copy: decoded again
    assert big.pixels.shape == (1, 160, 160) and big.how in ("frontal", "profile", "fallback")


def test_processes_threads_and_one_worker_agree(haar_kdef, tmp_path):
    table = get_dataset("kdef").load(haar_kdef)
    threads = build_cache(table, (1, 16, 16), cache_dir=tmp_path / "a", workers=2, processes=False)
    processes = build_cache(table, (1, 16, 16), cache_dir=tmp_path / "b", workers=2, processes=True)
    inline = build_cache(table, (1, 16, 16), cache_dir=tmp_path / "c", workers=1)
    for other in (processes, inline):  # the same crops however the work is spread (one cascade pair per thread)
        assert np.array_equal(threads.images.numpy(), other.images.numpy())
        assert threads.meta["detections"] == other.meta["detections"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_fbench_data_prepare(haar_kdef, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FBENCH_CACHE", str(tmp_path / "cache"))
    argv = ["data", "prepare", "kdef", "--data", f"kdef={haar_kdef}", "--input-size", "16", "--channels", "1"]
    status, text, _ = run(capsys, *argv)
    lines = text.splitlines()
    assert status == 0 and lines[0].startswith("prepared kdef at 1x16x16, crop haar: 14 images in")
    assert "images/s" in lines[0]
    assert lines[1].startswith("face crops: ") and "frontal" in lines[1] and "fallback" in lines[1]
    assert lines[2].startswith("cache: ") and Path(lines[2].removeprefix("cache: ")).is_dir()

    status, text, _ = run(capsys, *argv)
    assert status == 0 and "already prepared" in text

    status, text, _ = run(capsys, *argv[:-4], "--input-size", "24", "--channels", "3")
    assert status == 0 and "face boxes reused from" in text

    status, text, _ = run(capsys, "data", "info", "kdef", "--data", f"kdef={haar_kdef}")
    assert status == 0 and "face crops (haar)" in text and "frontal" in text

    status, _, err = run(capsys, "data", "prepare", "kdeff", "--data", f"kdef={haar_kdef}", "--input-size", "16")
    assert status == 2 and "kdeff" in err and len(err.strip().splitlines()) == 1
    status, _, err = run(capsys, "data", "prepare", "kdef", "--data", f"kdef={tmp_path / 'nowhere'}",
                         "--input-size", "16")
    assert status == 2 and "nowhere" in err and len(err.strip().splitlines()) == 1
