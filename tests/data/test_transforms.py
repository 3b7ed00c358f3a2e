"""Device batch transforms: determinism, per-sample draws, geometry against explicit references, colour jitter
against torchvision, recipe -> BatchAugment, offline expansion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fbench.contract import ArchitectureSpec, Augment, Recipe
from fbench.data import transforms as T
from fbench.errors import FbenchError
from fbench.registry import get_architecture


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def uint8_batch(n: int = 8, c: int = 3, h: int = 32, w: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen(seed))


def smooth_batch(n: int = 2, c: int = 3, h: int = 64, w: int = 64) -> torch.Tensor:
    y = torch.linspace(0, 1, h).view(1, 1, h, 1)
    x = torch.linspace(0, 1, w).view(1, 1, 1, w)
    phase = torch.arange(n * c, dtype=torch.float32).view(n, c, 1, 1)
    return 0.5 + 0.25 * torch.sin(3 * x + 2 * y + phase) * torch.cos(2 * x - y)


RANDOM_OPS = {
    "hflip": lambda x, g: T.hflip(x, g),
    "rotate_zoom": lambda x, g: T.rotate_zoom(x, g),
    "rotate_zoom_float_angles": lambda x, g: T.rotate_zoom(x, g, integer_degrees=False),
    "resize_crop": lambda x, g: T.resize_crop(x, g),
    "random_resized_crop": lambda x, g: T.random_resized_crop(x, g),
    "color_jitter": lambda x, g: T.color_jitter(x, g, 0.4, 0.3, 0.25, 0.05),
}


# ------------------------------------------------------------------------------------ determinism, dtypes


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_seeded_and_dtype_preserving(name: str, channels: int) -> None:
    op = RANDOM_OPS[name]
    images = uint8_batch(n=16, c=channels)
    first, again, other = op(images, gen(5)), op(images, gen(5)), op(images, gen(6))
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    floats = op(T.to_float(images), gen(5))
    assert floats.dtype == torch.float32 and floats.shape == images.shape


@pytest.mark.parametrize("name", ["rotate_zoom", "resize_crop", "random_resized_crop", "color_jitter"])
def test_samples_get_their_own_draws(name: str) -> None:
    images = uint8_batch(n=1).expand(16, -1, -1, -1).contiguous()
    out = RANDOM_OPS[name](images, gen(0))
    distinct = {tuple(row.flatten()[:4096].tolist()) for row in out}
    assert len(distinct) > 4


# ------------------------------------------------------------------------------------------------- hflip


def test_hflip_flips_about_half_exactly() -> None:
    images = uint8_batch(n=64)
    out = T.hflip(images, gen(0), p=0.5)
    flipped = (out != images).flatten(1).any(1)
    assert 16 <= int(flipped.sum()) <= 48
    assert torch.equal(out[flipped], images[flipped].flip(-1))
    assert torch.equal(out[~flipped], images[~flipped])


def test_hflip_p_edges() -> None:
    images = uint8_batch(n=10, c=1)
    assert torch.equal(T.hflip(images, gen(0), p=1.0), images.flip(-1))
    assert torch.equal(T.hflip(images, gen(0), p=0.0), images)


# ---------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("channels", [1, 3])
def test_rotate_zoom_without_rotation_or_zoom_is_identity(channels: int) -> None:
    # align_corners=False: the identity grid samples every pixel at its own centre.
    images = uint8_batch(n=6, c=channels, h=30, w=44)
    assert torch.equal(T.rotate_zoom(images, gen(0), max_degrees=0, zoom=1.0), images)
    floats = T.to_float(images)
    torch.testing.assert_close(T.rotate_zoom(floats, gen(0), max_degrees=0, zoom=1.0), floats,
                               atol=1e-5, rtol=0)


def test_rotate_90_is_rot90_counter_clockwise_on_square_images() -> None:
    images = T.to_float(uint8_batch(n=3, h=36, w=36))
    torch.testing.assert_close(T.rotate(images, 90.0), torch.rot90(images, 1, dims=(-2, -1)), atol=1e-4, rtol=0)


def test_rotate_90_moves_marked_pixel_on_non_square_image() -> None:
    h, w = 40, 64
    cy, cx = (h - 1) / 2, (w - 1) / 2
    images = torch.zeros(2, 1, h, w)
    r, c = 19, 41  # right of centre: offset (dx, dy) = (9.5, -0.5)
    images[:, 0, r, c] = 1.0
    out = T.rotate(images, torch.tensor([90.0, -90.0]))
    # Counter-clockwise 90 deg in display coordinates: (dx, dy) -> (dy, -dx); clockwise: (-dy, dx).
    ccw = (round(cy - (c - cx)), round(cx + (r - cy)))
    cw = (round(cy + (c - cx)), round(cx - (r - cy)))
    for i, (row, col) in enumerate((ccw, cw)):
        flat = int(out[i, 0].argmax())
        assert divmod(flat, w) == (row, col)
        assert out[i, 0, row, col] == pytest.approx(1.0, abs=1e-4)
    assert ccw == (10, 31)


def test_rotate_zoom_angles_are_bounded() -> None:
    # Every angle lies in [-15, 15]: the corners a rotation of at most 15 deg blackens stay within reach.
    images = torch.ones(64, 1, 64, 64)
    out = T.rotate_zoom(images, gen(0), max_degrees=15, zoom=1.0)
    blackened = 1.0 - out.mean(dim=(1, 2, 3))
    worst = 1.0 - T.rotate(torch.ones(1, 1, 64, 64), 15.0).mean()
    assert bool((blackened <= worst + 1e-5).all())
    assert bool((blackened > 1e-3).any())  # some are rotated
    # zoom 72/64 after rotation equals the explicit rotate, resize to 72 and centre crop (close, smooth image)
    smooth = smooth_batch(n=1)
    zoomed = T.rotate(smooth, 0.0, zoom=72 / 64)
    reference = F.interpolate(smooth, size=(72, 72), mode="bilinear", align_corners=False)[..., 4:68, 4:68]
    torch.testing.assert_close(zoomed, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_resize_crop_center_equals_resize_then_center_crop(channels: int) -> None:
    images = smooth_batch(n=2, c=channels)
    out = T.resize_crop(images, gen(0), resize=72, crop=64, mode="center")
    reference = F.interpolate(images, size=(72, 72), mode="bilinear", align_corners=False)[..., 4:68, 4:68]
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size,max_offset", [(64, 8), (128, 16)])
def test_resize_crop_random_offsets_are_whole_resized_pixels_in_range(size: int, max_offset: int) -> None:
    n = 64
    ramp = torch.arange(size, dtype=torch.float32)
    images = torch.stack([ramp.view(1, size).expand(size, size),  # channel 0: column index
                          ramp.view(size, 1).expand(size, size),  # channel 1: row index
                          torch.zeros(size, size)]).expand(n, -1, -1, -1)
    out = T.resize_crop(images, gen(3), resize=72, crop=64, mode="random")
    scale, j = 72 / 64, size // 2
    # Bilinear is exact on a ramp: output index j reads input index (j + 0.5 + offset) / scale - 0.5.
    ox = (out[:, 0, j, j] + 0.5) * scale - j - 0.5
    oy = (out[:, 1, j, j] + 0.5) * scale - j - 0.5
    for offsets in (ox, oy):
        torch.testing.assert_close(offsets, offsets.round(), atol=1e-3, rtol=0)
        assert offsets.round().min() >= 0 and offsets.round().max() <= max_offset
        assert len(set(offsets.round().tolist())) >= max_offset // 2
    # Reference for one sample: resize explicitly, crop at the recovered offset.
    resized = F.interpolate(images[:1], scale_factor=scale, mode="bilinear", align_corners=False)
    y0, x0 = int(oy[0].round()), int(ox[0].round())
    torch.testing.assert_close(out[0], resized[0, :, y0:y0 + size, x0:x0 + size], atol=1e-3, rtol=0)


def test_random_resized_crop_full_scale_is_identity_and_crops_zoom_in() -> None:
    images = T.to_float(uint8_batch(n=4, h=32, w=32))
    same = T.random_resized_crop(images, gen(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    # A ramp keeps its slope only if nothing is cropped: crops of area 0.25..0.5 stretch it by 1.4..2x.
    ramp = torch.arange(32, dtype=torch.float32).view(1, 1, 1, 32).expand(16, 1, 32, 32)
    out = T.random_resized_crop(ramp, gen(1), scale=(0.25, 0.5), ratio=(1.0, 1.0))
    slope = out[:, 0, 16, 20] - out[:, 0, 16, 12]
    assert bool(((slope > 8 * 0.5 * 0.99) & (slope < 8 * 0.71 * 1.01)).all())
    assert out.min() >= 0 and out.max() <= 31


# -------------------------------------------------------------------------------------------- photometric


@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_zero_strength_is_identity(channels: int) -> None:
    images = uint8_batch(c=channels)
    assert torch.equal(T.color_jitter(images, gen(0)), images)
    floats = T.to_float(images)
    assert torch.equal(T.color_jitter(floats, gen(0), 0, 0, 0, 0), floats)


def test_color_jitter_brightness_range() -> None:
    images = torch.full((256, 3, 4, 4), 0.5)
    out = T.color_jitter(images, gen(0), brightness=0.4)
    factor = out[:, 0, 0, 0] / 0.5
    assert factor.min() >= 0.6 - 1e-6 and factor.max() <= 1.4 + 1e-6
    assert factor.min() < 0.7 and factor.max() > 1.3
    assert torch.equal(out, out[:, :1, :1, :1].expand_as(out))  # one factor per sample, whole image


def test_color_jitter_one_channel() -> None:
    images = uint8_batch(c=1)
    out = T.color_jitter(images, gen(0), 0.4, 0.3, 0.25, 0.05)
    assert out.shape == images.shape and out.dtype == torch.uint8
    floats = T.to_float(images)
    assert torch.equal(T.color_jitter(floats, gen(0), saturation=0.5, hue=0.2), floats)


def test_color_ops_match_torchvision() -> None:
    tvf = pytest.importorskip("torchvision.transforms.functional")
    images = T.to_float(uint8_batch(n=4, h=16, w=16))
    factors = torch.tensor([0.6, 0.9, 1.2, 1.5])
    hues = torch.tensor([-0.5, -0.05, 0.1, 0.45])
    cases = [(T.adjust_brightness, tvf.adjust_brightness, factors), (T.adjust_contrast, tvf.adjust_contrast, factors),
             (T.adjust_saturation, tvf.adjust_saturation, factors), (T.adjust_hue, tvf.adjust_hue, hues)]
    for ours, theirs, values in cases:
        expected = torch.stack([theirs(img, float(v)) for img, v in zip(images, values)])
        torch.testing.assert_close(ours(images, values), expected, atol=1e-5, rtol=0)
    gray = images[:, :1]
    expected = torch.stack([tvf.adjust_contrast(img, float(v)) for img, v in zip(gray, factors)])
    torch.testing.assert_close(T.adjust_contrast(gray, factors), expected, atol=1e-5, rtol=0)


def test_color_jitter_rejects_bad_strengths() -> None:
    with pytest.raises(FbenchError, match="hue"):
        T.color_jitter(uint8_batch(), gen(0), hue=0.7)
    with pytest.raises(FbenchError, match="brightness"):
        T.color_jitter(uint8_batch(), gen(0), brightness=-0.1)


# ------------------------------------------------------------------------------------------ normalisation


def test_to_float_normalize_and_eval_transform() -> None:
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    floats = T.to_float(images)
    assert floats.dtype == torch.float32
    torch.testing.assert_close(floats[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    assert T.to_float(floats) is floats
    out = T.normalize(floats, (0.5, 0.2, 0.5), (0.5, 0.1, 0.25))
    torch.testing.assert_close(out[1, :, 1, 1], torch.tensor([-1.0, 0.0, 2.0]))
    spec = ArchitectureSpec(input_size=(3, 2, 2), mean=(0.5, 0.2, 0.5), std=(0.5, 0.1, 0.25), recipe=Recipe())
    torch.testing.assert_close(T.eval_transform(images, spec), out)
    gray = T.normalize(images[:, :1], (0.5,), (0.5,))
    assert torch.equal(gray, torch.full_like(gray, -1.0))
    with pytest.raises(FbenchError, match="channels"):
        T.normalize(floats, (0.5, 0.5), (0.5, 0.5))


# ------------------------------------------------------------------------------------------ BatchAugment


def test_lanmsff_recipe_offline_expansion() -> None:
    spec = get_architecture("lanmsff").spec
    augment = T.BatchAugment.from_recipe(spec.recipe, spec)
    assert augment.mode == "offline"
    assert augment.names == ("original", "hflip", "rotate_zoom", "resize_crop")
    n = 5
    images = uint8_batch(n=n, c=1, h=64, w=64)
    expanded, source = augment.expand_offline(images, gen(0))
    assert expanded.shape == (4 * n, 1, 64, 64) and expanded.dtype == torch.uint8
    assert torch.equal(source, torch.arange(n).repeat(4))
    assert torch.equal(expanded[:n], images)  # block 0: original
    assert torch.equal(expanded[n:2 * n], images.flip(-1))  # block 1: always flipped
    assert not torch.equal(expanded[2 * n:3 * n], images) and not torch.equal(expanded[3 * n:], images)
    again, _ = augment.expand_offline(images, gen(0))
    assert torch.equal(again, expanded)
    labels = torch.arange(n) * 10
    assert torch.equal(labels[source][n:2 * n], labels)
    # Offline recipes normalise only at training time: the expanded set already holds the variants.
    batch = augment(expanded, gen(1))
    assert batch.dtype == torch.float32 and batch.shape == expanded.shape
    torch.testing.assert_close(batch, T.eval_transform(expanded, spec))


@pytest.mark.parametrize("name", ["scan_cci", "timm/resnet18"])
def test_online_recipes(name: str) -> None:
    spec = get_architecture(name).spec
    augment = T.BatchAugment.from_recipe(spec.recipe, spec)
    assert augment.mode == "online"
    c, h, w = spec.input_size
    images = uint8_batch(n=4, c=c, h=h, w=w)
    out = augment(images, gen(0))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert torch.equal(out, augment(images, gen(0)))
    assert not torch.allclose(out, T.eval_transform(images, spec))
    assert torch.equal(augment(T.to_float(images), gen(0)), out)  # float input, same draws
    # the same recipe for a 1-channel spec
    gray_spec = spec.with_input(channels=1, image_size=48)
    gray = T.BatchAugment.from_recipe(spec.recipe, gray_spec)(uint8_batch(n=3, c=1, h=48, w=48), gen(0))
    assert gray.shape == (3, 1, 48, 48) and gray.dtype == torch.float32


def test_online_steps_run_in_order_with_own_draws() -> None:
    augment = T.BatchAugment([Augment("hflip", {"p": 1.0}), Augment("original")], (0.0,), (1.0,))
    images = uint8_batch(n=3, c=1)
    torch.testing.assert_close(augment(images, gen(0)), T.to_float(images).flip(-1))


def test_unknown_augment_and_parameter_errors() -> None:
    with pytest.raises(FbenchError, match="unknown augmentation 'mixup'.*color_jitter.*hflip.*rotate_zoom"):
        T.BatchAugment([Augment("mixup")], (0.5,), (0.5,))
    with pytest.raises(FbenchError, match="no parameter 'degrees'.*max_degrees"):
        T.BatchAugment([Augment("rotate_zoom", {"degrees": 10})], (0.5,), (0.5,))
    with pytest.raises(FbenchError, match="crop_mode"):
        T.BatchAugment([Augment("resize_crop", {"crop_mode": "corner"})], (0.5,), (0.5,))
    with pytest.raises(FbenchError, match="hue"):
        T.BatchAugment([Augment("color_jitter", {"hue": 0.9})], (0.5,), (0.5,))


# -------------------------------------------------------------------------------------------- on a GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("generator_device", ["cpu", "cuda"])
def test_cuda_batches_without_host_syncs(generator_device: str) -> None:
    spec = get_architecture("scan_cci").spec
    online = T.BatchAugment.from_recipe(spec.recipe, spec)
    lanmsff = get_architecture("lanmsff").spec
    offline = T.BatchAugment.from_recipe(lanmsff.recipe, lanmsff)
    images = uint8_batch(n=8, c=3, h=64, w=64).cuda()
    gray = uint8_batch(n=8, c=1, h=64, w=64).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = online(images, gen(0, generator_device))
        expanded, source = offline.expand_offline(gray, gen(0, generator_device))
        crops = T.random_resized_crop(images, gen(0, generator_device))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.is_cuda and expanded.is_cuda and source.is_cuda and crops.is_cuda
    assert torch.equal(out, online(images, gen(0, generator_device)))
    if generator_device == "cpu":  # a CPU generator gives the same draws whatever the batch's device
        torch.testing.assert_close(out.cpu(), online(images.cpu(), gen(0)), atol=1e-4, rtol=0)
        assert torch.equal(expanded[:16].cpu(), offline.expand_offline(gray.cpu(), gen(0))[0][:16])
