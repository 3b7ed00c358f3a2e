"""Perturbations: per-sample determinism, geometry of occluders and masks, parameters and conditions."""

from __future__ import annotations

import pytest
import torch

from fbench.errors import FbenchError, UnknownNameError
from fbench.perturb.apply import apply_condition, resolve_condition
from fbench.perturb.face import FaceFrame
from fbench.perturb.keys import sample_keys, uniform
from fbench.perturb.landmarks import CANONICAL, canonical_landmarks, fill_missing
from fbench.registry import get_perturbation
from fbench.suite.conditions import parse_condition

OCCLUSION_KINDS = ("rectangle", "eye_band", "mouth_band", "texture", "hand")
MASK_KINDS = ("surgical", "cloth", "n95", "kn95")
CONDITIONS = [f"occlusion:kind={k},severity=0.4" for k in OCCLUSION_KINDS] + [f"mask:kind={k}" for k in MASK_KINDS]
EYES, NOSE, MOUTH, CHIN = (0, 1), 2, (3, 4), 5


def _batch(n: int = 6, size: int = 64, channels: int = 3, poses: list[str] | None = None, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = 0.3 + 0.4 * torch.rand(n, channels, size, size, generator=generator)
    poses = poses or (["S", "HL", "HR", "FL", "FR", "S"] * n)[:n]
    landmarks = canonical_landmarks(poses, n) + 0.005 * torch.randn(n, 6, 2, generator=generator)
    return images, landmarks, [f"subject{i}/img{i}.jpg" for i in range(n)], poses


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: pixels that changed in any channel."""
    return (after - before).abs().amax(dim=1) > 1e-6


def _at(mask: torch.Tensor, landmarks: torch.Tensor, sample: int, point: int) -> bool:
    size_y, size_x = mask.shape[1:]
    x, y = landmarks[sample, point].tolist()
    return bool(mask[sample, min(int(y * size_y), size_y - 1), min(int(x * size_x), size_x - 1)])


# -- keys ------------------------------------------------------------------------------------------------------

def test_keys_are_stable_and_distinct():
    keys = sample_keys(["kdef/AF01ANS.JPG"], "occlusion:kind='rectangle'", 0)
    assert keys.dtype == torch.int64 and keys.shape == (1,)
    assert keys.tolist() == [-9161322846572707336]  # guards the hash against changes
    many = sample_keys([f"id{i}" for i in range(100)], "c", 0)
    assert len(set(many.tolist())) == 100
    assert not torch.equal(sample_keys(["a"], "c", 0), sample_keys(["a"], "c", 1))
    assert not torch.equal(sample_keys(["a"], "c", 0), sample_keys(["a"], "d", 0))


def test_uniforms_are_counter_based():
    keys = sample_keys([f"id{i}" for i in range(50)], "c", 0)
    draws = uniform(keys, 7, 10)
    assert draws.shape == (50, 10) and draws.dtype == torch.float32
    assert float(draws.min()) >= 0.0 and float(draws.max()) < 1.0
    assert torch.equal(uniform(keys, 7, 4), draws[:, :4])               # independent of the count
    assert torch.equal(uniform(keys[[3, 1]], 7, 10), draws[[3, 1]])     # independent of the batch
    assert not torch.equal(uniform(keys, 8, 10), draws)                  # streams differ
    big = uniform(keys, 1, 2000)
    assert abs(float(big.mean()) - 0.5) < 0.01 and abs(float(big.var()) - 1 / 12) < 0.005


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_uniforms_identical_on_cuda():
    keys = sample_keys([f"id{i}" for i in range(20)], "c", 3)
    assert torch.equal(uniform(keys, 5, 64), uniform(keys.cuda(), 5, 64).cpu())


# -- determinism -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("condition", CONDITIONS)
def test_per_sample_determinism(condition):
    images, landmarks, ids, poses = _batch(6, 48)
    out = apply_condition(condition, images, landmarks, ids, 0, poses)
    assert torch.equal(out, apply_condition(condition, images, landmarks, ids, 0, poses))
    order = [4, 0, 5, 2, 1, 3]
    shuffled = apply_condition(condition, images[order], landmarks[order], [ids[i] for i in order], 0,
                               [poses[i] for i in order])
    assert torch.equal(shuffled, out[order])
    alone = apply_condition(condition, images[2:3], landmarks[2:3], ids[2:3], 0, poses[2:3])
    assert torch.equal(alone, out[2:3])
    other_seed = apply_condition(condition, images, landmarks, ids, 1, poses)
    if "band" not in condition:  # bands are fixed by the landmarks; only their colour is drawn
        assert not torch.equal(other_seed, out)


def test_shapes_dtypes_and_no_in_place_change():
    for dtype in (torch.float32, torch.float64):
        images, landmarks, ids, poses = _batch(3, 40)
        images = images.to(dtype)
        copy = images.clone()
        for condition in CONDITIONS:
            out = apply_condition(condition, images, landmarks, ids, 0, poses)
            assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
            assert not torch.equal(out, images)
        assert torch.equal(images, copy)
    odd, landmarks, ids, poses = _batch(2, 40)
    odd = odd[:, :, :31, :]  # H != W
    assert apply_condition("mask", odd, landmarks, ids, 0, poses).shape == odd.shape


@pytest.mark.parametrize("condition", [f"occlusion:kind={k},severity=0" for k in OCCLUSION_KINDS]
                         + [f"mask:kind={k},severity=0" for k in MASK_KINDS])
def test_severity_zero_changes_nothing(condition):
    images, landmarks, ids, poses = _batch(3, 32)
    assert torch.equal(apply_condition(condition, images, landmarks, ids, 0, poses), images)


def test_grayscale_matches_luminance_of_colour():
    grey, landmarks, ids, poses = _batch(4, 48, channels=1)
    colour = grey.expand(-1, 3, -1, -1).contiguous()
    for condition in CONDITIONS:
        one = apply_condition(condition, grey, landmarks, ids, 0, poses)
        three = apply_condition(condition, colour, landmarks, ids, 0, poses)
        luma = 0.299 * three[:, 0:1] + 0.587 * three[:, 1:2] + 0.114 * three[:, 2:3]
        assert one.shape == grey.shape
        assert torch.allclose(one, luma, atol=1e-5), condition


# -- geometry --------------------------------------------------------------------------------------------------

def _coverage(kind: str, severity: float, n: int = 12, size: int = 128) -> torch.Tensor:
    images = torch.full((n, 3, size, size), 0.5)
    landmarks = canonical_landmarks(None, n)
    ids = [f"face{i}" for i in range(n)]
    out = apply_condition(f"occlusion:kind={kind},severity={severity}", images, landmarks, ids, 0)
    box = FaceFrame.from_landmarks(landmarks, size, size).face_box_mask()
    changed = _changed(images, out) & box
    return changed.sum((1, 2)).float() / box.sum((1, 2)).float()


def test_rectangles_cover_the_target_fraction_of_the_face():
    for severity in (0.1, 0.25, 0.5, 0.8):
        coverage = _coverage("rectangle", severity)
        assert (coverage - severity).abs().max() < 0.05, (severity, coverage)


@pytest.mark.parametrize("kind", ["rectangle", "texture", "hand"])
def test_coverage_grows_with_severity(kind):
    means = [float(_coverage(kind, s, n=8, size=96).mean()) for s in (0.1, 0.3, 0.6)]
    assert means[0] < means[1] < means[2]
    assert abs(means[0] - 0.1) < 0.05


@pytest.mark.parametrize("pose", ["S", "HL", "HR"])
def test_bands_cover_their_landmarks_only(pose):
    images, landmarks, ids, poses = _batch(4, 96, poses=[pose] * 4)
    for severity in (0.3, 1.0):
        eye = _changed(images, apply_condition(f"occlusion:kind=eye_band,severity={severity}", images, landmarks,
                                               ids, 0, poses))
        mouth = _changed(images, apply_condition(f"occlusion:kind=mouth_band,severity={severity}", images,
                                                 landmarks, ids, 0, poses))
        for i in range(4):
            assert all(_at(eye, landmarks, i, p) for p in EYES)
            assert not any(_at(eye, landmarks, i, p) for p in MOUTH + (CHIN,))
            assert all(_at(mouth, landmarks, i, p) for p in MOUTH)
            assert not any(_at(mouth, landmarks, i, p) for p in EYES)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("pose", ["S", "HL", "HR"])
def test_mask_covers_nose_to_chin_not_the_eyes(kind, pose):
    images, landmarks, ids, poses = _batch(4, 96, poses=[pose] * 4)
    changed = _changed(images, apply_condition(f"mask:kind={kind}", images, landmarks, ids, 0, poses))
    for i in range(4):
        for point in (NOSE, CHIN) + MOUTH:
            assert _at(changed, landmarks, i, point), (kind, pose, i, point)
        for point in EYES:
            assert not _at(changed, landmarks, i, point), (kind, pose, i, point)


def test_slipped_mask_leaves_the_nose_out():
    images, landmarks, ids, poses = _batch(4, 96, poses=["S"] * 4)
    changed = _changed(images, apply_condition("mask:kind=surgical,severity=0.5", images, landmarks, ids, 0, poses))
    for i in range(4):
        assert not _at(changed, landmarks, i, NOSE)
        assert all(_at(changed, landmarks, i, p) for p in MOUTH + (CHIN,))
    full = _changed(images, apply_condition("mask:kind=surgical", images, landmarks, ids, 0, poses))
    assert int(changed.sum()) < int(full.sum())


def test_profile_mask_stays_on_the_visible_side():
    images, landmarks, ids, poses = _batch(2, 96, poses=["FL", "FR"])
    changed = _changed(images, apply_condition("mask", images, landmarks, ids, 0, poses))
    for i in range(2):
        assert _at(changed, landmarks, i, NOSE) and _at(changed, landmarks, i, CHIN)
    columns = changed.any(dim=1)  # (N, W): columns the mask reaches
    nose_x = (landmarks[:, NOSE, 0] * 96).long()
    assert not columns[0, : max(0, int(nose_x[0]) - 12)].any()   # facing left: nothing far left of the nose
    assert not columns[1, int(nose_x[1]) + 12:].any()             # facing right: nothing far right of it


# -- landmarks -------------------------------------------------------------------------------------------------

def test_nan_landmarks_fall_back_to_canonical():
    images, _, ids, poses = _batch(5, 48)
    nan = torch.full((5, 6, 2), float("nan"))
    canonical = canonical_landmarks(poses, 5)
    for condition in ("mask:kind=n95", "occlusion:kind=hand,severity=0.3"):
        assert torch.equal(apply_condition(condition, images, nan, ids, 0, poses),
                           apply_condition(condition, images, canonical, ids, 0, poses))
        assert torch.equal(apply_condition(condition, images, None, ids, 0, poses),
                           apply_condition(condition, images, canonical, ids, 0, poses))
    filled = fill_missing(nan, None)
    assert torch.allclose(filled, torch.tensor(CANONICAL["S"]).expand(5, 6, 2))


def test_partly_known_landmarks_are_completed_consistently():
    known = canonical_landmarks(["S"], 1) * 0.8 + 0.1  # a smaller face, shifted
    partial = known.clone()
    partial[0, 5] = float("nan")  # chin unknown
    partial[0, 2, 0] = float("nan")  # nose unknown
    filled = fill_missing(partial, ["S"])
    assert torch.isfinite(filled).all()
    assert torch.equal(filled[0, [0, 1, 3, 4]], known[0, [0, 1, 3, 4]])
    assert torch.allclose(filled, known, atol=1e-5)


def test_canonical_poses_are_plausible():
    for points in CANONICAL.values():
        (elx, ely), (erx, ery), (nx, ny), (mlx, mly), (mrx, mry), (cx, cy) = points
        assert elx <= erx and mlx <= mrx and ely < ny < mly < cy
        assert all(0.0 < v < 1.0 for p in points for v in p)
    assert CANONICAL["FL"][2][0] < CANONICAL["FL"][0][0]  # facing left: nose left of the eyes
    assert CANONICAL["FR"][2][0] > CANONICAL["FR"][1][0]
    frame = FaceFrame.from_landmarks(canonical_landmarks(["FL", "HL", "S", "HR", "FR"], 5), 100, 100)
    assert frame.sin_yaw.tolist() == pytest.approx([-1.0, -0.7071, 0.0, 0.7071, 1.0], abs=0.02)


# -- parameters and conditions -----------------------------------------------------------------------------------

def test_parse_condition():
    assert parse_condition("mask:kind=surgical,severity=0.8") == ("mask", {"kind": "surgical", "severity": 0.8})
    assert parse_condition("occlusion") == ("occlusion", {})
    assert parse_condition(" occlusion: kind = hand , severity=1 ") == ("occlusion", {"kind": "hand", "severity": 1})
    for bad in ("", ":kind=hand", "mask:kind", "mask:kind=", "mask:severity=1,severity=0.5"):
        with pytest.raises(FbenchError):
            parse_condition(bad)


def test_registry_and_defaults():
    occlusion, params, key = resolve_condition("occlusion")
    assert occlusion is get_perturbation("occlusion")
    assert params == {"kind": "rectangle", "severity": 0.25}
    assert "severity" not in key
    mask, params, _ = resolve_condition("mask:severity=1")
    assert params == {"kind": "surgical", "severity": 1.0, "color": None}
    assert mask.name == "mask"


def test_condition_errors_name_the_fix():
    images, landmarks, ids, poses = _batch(2, 32)
    with pytest.raises(UnknownNameError, match="Did you mean 'mask'"):
        apply_condition("maks", images, landmarks, ids, 0)
    with pytest.raises(FbenchError, match="Did you mean 'severity'.*kind"):
        apply_condition("mask:sevrity=0.5", images, landmarks, ids, 0)
    with pytest.raises(FbenchError, match="surgical, cloth, n95, kn95"):
        apply_condition("mask:kind=surgicall", images, landmarks, ids, 0)
    with pytest.raises(FbenchError, match=r"\[0, 1\]"):
        apply_condition("occlusion:severity=1.5", images, landmarks, ids, 0)
    with pytest.raises(FbenchError, match="number"):
        apply_condition("occlusion:severity=lots", images, landmarks, ids, 0)
    with pytest.raises(FbenchError, match="colour"):
        apply_condition("mask:color=plaid", images, landmarks, ids, 0)
    with pytest.raises(FbenchError, match="sample ids"):
        apply_condition("mask", images, landmarks, ids[:1], 0)
    with pytest.raises(FbenchError, match="rectangle, eye_band"):
        get_perturbation("occlusion").apply(images, landmarks, sample_keys(ids, "x", 0), kind="circle")


def test_fixed_colour_and_severity_sweeps_share_draws():
    images, landmarks, ids, poses = _batch(3, 64, poses=["S"] * 3)
    for condition, (red, green, blue) in (("mask:color=white", (0.95, 0.95, 0.95)),
                                           ("mask:kind=cloth,color=#c02030", (0.75, 0.125, 0.19))):
        out = apply_condition(condition, images, landmarks, ids, 0, poses)
        inside = _changed(images, out)[:, None].expand_as(out)
        mean = torch.stack([out[:, c][inside[:, c]].mean() for c in range(3)])
        assert mean.tolist() == pytest.approx([red * 0.85, green * 0.85, blue * 0.85], abs=0.12)
    small = _changed(images, apply_condition("occlusion:kind=hand,severity=0.2", images, landmarks, ids, 0, poses))
    large = _changed(images, apply_condition("occlusion:kind=hand,severity=0.4", images, landmarks, ids, 0, poses))
    assert int(small.sum()) < int(large.sum())
    assert int((small & large).sum()) > 0.5 * int(small.sum())  # the same hand, larger


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    images, landmarks, ids, poses = _batch(4, 64)
    for condition in CONDITIONS:
        cpu = apply_condition(condition, images, landmarks, ids, 0, poses)
        gpu = apply_condition(condition, images.cuda(), landmarks.cuda(), ids, 0, poses)
        assert gpu.device.type == "cuda"
        assert (gpu.cpu() - cpu).abs().gt(1e-3).float().mean() < 0.002, condition
