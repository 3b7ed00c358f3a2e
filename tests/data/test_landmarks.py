"""Landmark placement on faces cropped as real ones: the calibrated per-pose positions' error, whether the eye and
mouth bands and the masks land on the true points (calibrated positions, and dlib's where it is installed), and
where landmarks come from (cache, `fbench data info`, previews)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import fbench.data.cache as cache_module
from fbench.cli import main
from fbench.data.cache import build_cache, landmark_counts
from fbench.data.calibrate import Measured, measure
from fbench.data.faces import Square, landmarks_in_crop
from fbench.data.landmarker import find_landmarks, missing_reason
from fbench.data.placement import CALIBRATED, MODEL, RECORDED, calibrated_landmarks, place_landmarks
from fbench.perturb.apply import apply_condition
from fbench.registry import get_dataset

TILE = 80
FRONT_POSES = ("S", "HL", "HR")
EYES, NOSE, MOUTH, CHIN = (0, 1), 2, (3, 4), 5


@pytest.fixture(scope="module")
def measured() -> list[Measured]:
    """20 synthetic faces per pose at 320 x 236 (KDEF's aspect), cropped as real photographs are. The table was
    fitted on other faces (seed 0) at KDEF's full size, so these check that it carries over."""
    return measure(20, seed=1, size=(320, 236))


def coverage(condition: str, landmarks: list[np.ndarray]) -> torch.Tensor:
    """(N, TILE, TILE) how much ``condition`` covers each pixel, placed by ``landmarks``: 1 - the change between
    its results on a black and on a white image (a covered pixel shows the occluder on both)."""
    points = torch.tensor(np.stack(landmarks), dtype=torch.float32)
    ids = [str(i) for i in range(len(landmarks))]
    black = apply_condition(condition, torch.zeros(len(ids), 3, TILE, TILE), points, ids, 0)
    white = apply_condition(condition, torch.ones(len(ids), 3, TILE, TILE), points, ids, 0)
    return 1.0 - (white - black).abs().mean(dim=1)


def covered(cover: torch.Tensor, truth: np.ndarray, points: tuple[int, ...]) -> np.ndarray:
    """(N,) whether every one of ``points`` of the true landmarks (N x 6 x 2, normalised) is covered; a point past
    the crop's edge counts at the edge pixel nearest to it."""
    pixels = np.clip(np.floor(truth * TILE).astype(int), 0, TILE - 1)
    return np.array([all(float(cover[i, pixels[i, p, 1], pixels[i, p, 0]]) > 0.5 for p in points)
                     for i in range(len(truth))])


def test_calibrated_positions_are_close_per_pose(measured):
    for pose in ("FL", "HL", "S", "HR", "FR"):
        faces = [m for m in measured if m.pose == pose]
        errors = [float(np.linalg.norm(calibrated_landmarks(m.how, pose) - m.landmarks, axis=1).mean() / m.face_width)
                  for m in faces]
        # The typical face's mean landmark error, in face widths. Full profiles: rendered profiles defeat the Haar
        # profile cascade, and the fixed box is as far off as the set's framing jitter (+-4 % of the width, +-3 %
        # of the height): 8-10 % there.
        bound = 0.08 if pose in FRONT_POSES else 0.11
        assert np.median(errors) <= bound, (pose, np.round(errors, 3))
        assert np.mean(errors) <= (0.09 if pose in FRONT_POSES else 0.25), (pose, np.round(errors, 3))


def placed_by_calibration(faces: list[Measured]) -> list[np.ndarray]:
    """The landmarks a cache build gives these crops without a landmark model: calibrated positions (6 x 4, with
    their spread)."""
    placed = []
    for m in faces:
        points, source = place_landmarks(np.full((6, 2), np.nan), None, Square(0.0, 0.0, 1.0), m.how, m.pose)
        assert source == CALIBRATED and points.shape == (6, 4)
        placed.append(points)
    return placed


def test_bands_cover_the_eyes_and_the_mouth_with_calibrated_positions(measured):
    faces = [m for m in measured if m.pose in FRONT_POSES]
    placed = placed_by_calibration(faces)
    truth = np.stack([m.landmarks for m in faces])
    eye_band = coverage("occlusion:kind=eye_band,severity=0.5", placed)
    mouth_band = coverage("occlusion:kind=mouth_band,severity=0.5", placed)
    assert covered(eye_band, truth, EYES).mean() >= 0.95, covered(eye_band, truth, EYES)
    assert covered(mouth_band, truth, MOUTH).mean() >= 0.95, covered(mouth_band, truth, MOUTH)
    # The padding by the calibrated spread does not swallow the face: the eye band at severity 0.5 covers under a
    # third of the crop on average and under 0.4 in every face (measured: 0.24 and 0.31 at most; unpadded 0.13),
    # the mouth band (the mouth moves with the expression too: a larger spread) under half (measured: 0.33 on
    # average, 0.44 at most); and the eye band leaves the mouth corners, the mouth band the eyes, visible in
    # nearly every face.
    for band, mean, most in ((eye_band, 1 / 3, 0.4), (mouth_band, 0.4, 0.5)):
        share = (band > 0.5).float().mean(dim=(1, 2))
        assert float(share.mean()) < mean and float(share.max()) < most, share
    for band, others in ((eye_band, MOUTH), (mouth_band, EYES)):
        either = covered(band, truth, others[:1]) | covered(band, truth, others[1:])
        assert either.mean() <= 0.05, either


def test_masks_cover_nose_mouth_and_chin(measured):
    faces = [m for m in measured if m.pose in FRONT_POSES]
    truth = np.stack([m.landmarks for m in faces])
    # Placed by the true landmarks of frontal and half-profile faces: the mask fits the face's own points, not only
    # its head model's; placed by calibrated positions: it reaches past them by their spread.
    for placed in (list(truth), placed_by_calibration(faces)):
        for kind in ("surgical", "n95"):  # the widest and the narrowest
            hit = covered(coverage(f"mask:kind={kind}", placed), truth, (NOSE, *MOUTH, CHIN))
            assert hit.mean() >= 0.95, (kind, placed[0].shape, hit)


@pytest.mark.skipif(missing_reason() is not None, reason=f"no landmark model: {missing_reason()}")
def test_model_landmarks_hit_their_targets_on_frontal_faces(measured):
    placed, truth = [], []
    for m in (m for m in measured if m.pose == "S"):
        found = find_landmarks(cv2.cvtColor(m.image, cv2.COLOR_RGB2GRAY))
        if found is not None:
            square, points = found
            placed.append(landmarks_in_crop(points, square))
            truth.append(landmarks_in_crop(m.true_pixels, square))
    assert len(placed) >= 18  # dlib finds (nearly) every rendered frontal face
    true = np.stack(truth)
    errors = np.linalg.norm(np.stack(placed) - true, axis=2).mean(axis=1)
    assert np.median(errors) < 0.03, errors  # in crop widths
    for condition, points in (("occlusion:kind=eye_band,severity=0.5", EYES),
                              ("occlusion:kind=mouth_band,severity=0.5", MOUTH),
                              ("mask:kind=surgical", (NOSE, *MOUTH, CHIN))):
        hit = covered(coverage(condition, placed), true, points)
        assert hit.mean() >= 0.95, (condition, hit)


@pytest.fixture(scope="module")
def kdef_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 synthetic faces at 320 x 236 as a real KDEF folder (no manifest: crop haar, no recorded landmarks)."""
    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef

    root = tmp_path_factory.mktemp("kdef-like") / "kdef"
    build_synthetic_kdef(root, SynthConfig(identities=2, sessions=1, image_size=(320, 236), expressions=("HA",)),
                         workers=1)
    (root / "fbench_manifest.csv").unlink()
    (root / "fbench_synthetic.json").unlink()
    return root


def test_the_cache_keeps_each_faces_landmarks_and_source(kdef_like, tmp_path, monkeypatch):
    table = get_dataset("kdef").load(kdef_like)
    monkeypatch.setattr(cache_module, "available_model", lambda: None)  # as without dlib
    notes: list[str] = []
    cached = build_cache(table, (1, 32, 32), cache_dir=tmp_path / "a", workers=1, note=notes.append)
    assert cached.landmark_sources == [CALIBRATED] * len(table)
    assert bool(torch.isfinite(cached.landmarks).all())
    assert any("no landmark model" in n and "calibrated" in n for n in notes)
    assert cached.meta["landmark_model"] is None
    assert sum(n for row in cached.meta["landmark_sources"].values() for n in row.values()) == len(table)
    assert landmark_counts(table, cache_dir=tmp_path / "a") == cached.meta["landmark_sources"]
    monkeypatch.undo()
    if missing_reason() is None:  # with dlib: the frontal and half-profile faces it finds get its landmarks
        model = build_cache(table, (1, 32, 32), cache_dir=tmp_path / "b", workers=1)
        assert model.key != cached.key and model.meta["landmark_model"] == "dlib-68"
        frontal = [s for s, p in zip(model.landmark_sources, model.poses) if p == "S"]
        assert frontal.count(MODEL) >= 1 and set(model.landmark_sources) <= {MODEL, CALIBRATED}
        assert {s for s, p in zip(model.landmark_sources, model.poses) if p in ("FL", "FR")} == {CALIBRATED}


def test_recorded_landmarks_are_named_as_such(tiny_kdef, tmp_path):
    table = get_dataset("kdef").load(tiny_kdef)
    counts = landmark_counts(table, cache_dir=tmp_path)
    assert counts is not None and set(counts) == {"FL", "HL", "S", "HR", "FR"}
    assert all(row == {RECORDED: 70} for row in counts.values())


def test_info_and_preview_name_the_sources(kdef_like, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    data = ["--data", f"kdef={kdef_like}"]
    assert main(["data", "info", "kdef", *data]) == 0
    assert "not placed yet: fbench data prepare" in capsys.readouterr().out
    assert main(["data", "prepare", "kdef", *data, "--input-size", "24"]) == 0
    assert "landmarks (model " in capsys.readouterr().out
    assert main(["data", "info", "kdef", *data]) == 0
    text = capsys.readouterr().out
    assert "landmark sources" in text and "FL: calibrated 2" in text and "FR: calibrated 2" in text

    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    perturb = ["--perturb", "occlusion:kind=eye_band,severity=0.5", "--count", "10", "--size", "64"]
    assert main(["data", "preview", "kdef", *data, *perturb, "--out", str(plain)]) == 0
    assert main(["data", "preview", "kdef", *data, *perturb, "--out", str(marked), "--landmarks"]) == 0
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(marked))
    assert a.shape == b.shape and (a != b).any(axis=2).sum() > 10 * 6  # six marks on each of ten faces, captions

