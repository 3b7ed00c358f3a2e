"""Landmarks with their uncertainty (N x 6 x 4): exact ones place occluders exactly as plain N x 6 x 2 ones, and an
uncertain point makes the bands and masks aimed at it reach past it by its spread, on every side."""

from __future__ import annotations

import pytest
import torch

from fbench.errors import FbenchError
from fbench.perturb.apply import apply_condition
from fbench.perturb.face import FaceFrame
from fbench.perturb.landmarks import canonical_landmarks, fill_missing

SIZE = 96
POSES = ["S", "HL", "HR", "S"]
IDS = [f"p{i}" for i in range(len(POSES))]


def with_spread(landmarks: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    spread = torch.tensor([sx, sy]).expand(landmarks.shape[0], landmarks.shape[1], 2)
    return torch.cat([landmarks, spread], dim=-1)


def cover(condition: str, landmarks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: the pixels ``condition`` covers (changed on a black and a white image alike)."""
    n = landmarks.shape[0]
    black = apply_condition(condition, torch.zeros(n, 3, SIZE, SIZE), landmarks, IDS[:n], 0)
    white = apply_condition(condition, torch.ones(n, 3, SIZE, SIZE), landmarks, IDS[:n], 0)
    return (1.0 - (white - black).abs().mean(dim=1)) > 0.5


@pytest.mark.parametrize("condition", ["occlusion:kind=eye_band,severity=0.5", "occlusion:kind=mouth_band,severity=0.3",
                                       "mask:kind=surgical", "mask:kind=n95,severity=0.6", "occlusion:kind=hand"])
def test_exact_landmarks_place_as_before(condition):
    points = canonical_landmarks(POSES, len(POSES))
    plain = cover(condition, points)
    assert torch.equal(plain, cover(condition, with_spread(points, 0.0, 0.0)))
    # Unknown half-widths count as exact.
    assert torch.equal(plain, cover(condition, with_spread(points, float("nan"), float("nan"))))


def test_fill_missing_keeps_the_uncertainty():
    points = with_spread(torch.full((2, 6, 2), float("nan")), 0.02, 0.03)
    filled = fill_missing(points, ["HL", "S"])
    assert filled.shape == (2, 6, 4)
    assert torch.allclose(filled[..., :2], canonical_landmarks(["HL", "S"], 2))
    assert torch.allclose(filled[..., 2:], torch.tensor([0.02, 0.03]).expand(2, 6, 2))
    with pytest.raises(FbenchError, match="N x 6 x 4"):
        fill_missing(torch.zeros(2, 6, 3))


def test_the_frame_turns_the_spread_into_frame_units():
    points = canonical_landmarks(["S"], 1)
    frame = FaceFrame.from_landmarks(with_spread(points, 0.02, 0.04), SIZE, SIZE)
    scale = float(frame.scale[0])  # pixels per frame unit; an upright face: u along x, v along y
    assert torch.allclose(frame.spread[0], torch.tensor([0.02, 0.04]).expand(6, 2) * SIZE / scale, atol=1e-4)
    assert float(FaceFrame.from_landmarks(points, SIZE, SIZE).spread.abs().max()) == 0.0


@pytest.mark.parametrize("kind, rows", [("eye_band", (0, 1)), ("mouth_band", (3, 4))])
def test_a_band_grows_by_the_spread_of_its_points(kind, rows):
    points = canonical_landmarks(POSES, len(POSES))
    condition = f"occlusion:kind={kind},severity=0.3"
    exact, padded = cover(condition, points), cover(condition, with_spread(points, 0.03, 0.05))
    assert bool((padded | ~exact).all())  # everything the exact band covers, and more
    height = lambda c: c.any(dim=2).sum(dim=1).float()  # noqa: E731 - rows touched, per sample
    grown = height(padded) - height(exact)
    # Two spreads more (0.05 of the crop above and below: 4.8 pixels each), give or take the anti-aliased edges.
    assert bool(((grown >= 2 * 0.05 * SIZE - 2) & (grown <= 2 * 0.05 * SIZE + 2)).all()), grown
    # The true points anywhere within their spread are covered.
    for dx, dy in ((-0.03, -0.05), (0.03, 0.05), (-0.03, 0.05), (0.03, -0.05)):
        for i in range(len(POSES)):
            for p in rows:
                x = int((float(points[i, p, 0]) + dx * 0.9) * SIZE)
                y = int((float(points[i, p, 1]) + dy * 0.9) * SIZE)
                assert bool(padded[i, y, x]), (kind, i, p, dx, dy)


def test_a_mask_reaches_past_uncertain_points():
    points = canonical_landmarks(POSES, len(POSES))
    padded, exact = cover("mask:kind=n95", with_spread(points, 0.04, 0.04)), cover("mask:kind=n95", points)
    # Larger, and (nearly) all of the exact mask: its outline is resampled between the moved edges.
    assert bool((padded.sum(dim=(1, 2)) > exact.sum(dim=(1, 2))).all())
    assert bool(((exact & ~padded).sum(dim=(1, 2)) < 0.03 * exact.sum(dim=(1, 2))).all())
    for dx, dy in ((-0.04, 0.0), (0.04, 0.0), (0.0, 0.04)):
        for i in range(len(POSES)):
            for p in (2, 3, 4, 5):  # nose tip, mouth corners, chin
                x = min(SIZE - 1, int((float(points[i, p, 0]) + dx * 0.9) * SIZE))
                y = min(SIZE - 1, int((float(points[i, p, 1]) + dy * 0.9) * SIZE))
                assert bool(padded[i, y, x]), (i, p, dx, dy)
