"""Batch augmentation and normalisation on the device, with per-sample random parameters (torch ops only).

Every function takes a whole batch ``N x C x H x W`` (C = 1 or 3, any H and W) that already lives on the
device, uint8 (0..255) or floating point ([0, 1]). There are no per-image Python loops and no host syncs
(no ``.item()``, no boolean indexing): random parameters are drawn as tensors, one per sample, and the
geometric operations are a single ``affine_grid`` + ``grid_sample`` call per batch.

Conventions
-----------
* **dtype**: the augmentation functions keep the input dtype. uint8 in, uint8 out (the float result is
  rounded and clamped to 0..255), so an offline-expanded training set can be cached as uint8; float in,
  float out. :func:`to_float`, :func:`normalize`, :func:`eval_transform` and :class:`BatchAugment` return
  float32.
* **Randomness**: every random function takes a ``torch.Generator``. Draws are made on the generator's device
  and then moved to the batch's device (``non_blocking``, no stream sync), so a CPU generator works with a CUDA
  batch and a CUDA generator with a CUDA batch (fastest: nothing crosses the bus). The same seed on the same
  generator device gives the same batch; CPU and CUDA generators give different streams.
  ``generator=None`` uses the global RNG of the batch's device.
* **Coordinates**: ``grid_sample`` is used with ``align_corners=False``: normalised coordinates -1 and 1 are
  the outer *edges* of the border pixels, so the identity transform samples every pixel at its own centre
  (exact identity), the rotation centre is the geometric centre of the image ((W-1)/2, (H-1)/2 in pixel
  indices) and a resize by ``s`` maps output index ``i`` to input index ``(i + 0.5) / s - 0.5``, the same
  convention as ``F.interpolate(..., align_corners=False)``. Rotations are done in pixel space (the aspect
  ratio of non-square images is accounted for).
* **Rotation sign**: a positive angle turns the image counter-clockwise as displayed (row 0 at the top), as in
  ``cv2.getRotationMatrix2D`` and ``torchvision``; ``rotate(x, 90)`` on a square image equals
  ``torch.rot90(x, 1, dims=(-2, -1))``.
* **Borders**: rotations fill with black (zeros, as LANMSFF's ``cv2.warpAffine``); crops and resizes clamp to
  the border pixel (as a resize does).
* **Colour jitter**: per-sample factors drawn as in torchvision's ``ColorJitter``; the operations are applied
  in the fixed order brightness, contrast, saturation, hue (torchvision draws a random order). Hue is shifted
  through a vectorised RGB -> HSV -> RGB round trip (torchvision's formulas), so it matches
  ``torchvision.transforms.functional.adjust_hue``. Saturation and hue are no-ops for 1-channel input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from fbench.contract import ArchitectureSpec, Augment, Recipe
from fbench.errors import FbenchError

__all__ = [
    "AUGMENTS",
    "BatchAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "eval_transform",
    "hflip",
    "normalize",
    "random_resized_crop",
    "resize_crop",
    "rotate",
    "rotate_zoom",
    "to_float",
]

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


# --------------------------------------------------------------------------------------------- helpers


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise FbenchError(f"batch transforms take an N x C x H x W tensor (got {shape})")


def _work_dtype(images: torch.Tensor) -> torch.dtype:
    return images.dtype if images.is_floating_point() else torch.float32


def _restore(result: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """Return ``result`` (float, in units where ``scale`` is full range) in ``dtype``."""
    if dtype == torch.uint8:
        return (result * (255.0 / scale)).round_().clamp_(0, 255).to(torch.uint8)
    return result.to(dtype)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a small host tensor to ``device`` without a stream sync (``non_blocking``: the driver stages
    pageable memory at once, so the host never waits for queued kernels)."""
    return tensor.to(device, non_blocking=True)


def _rand(n: int | tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) draws of shape ``n`` from ``generator`` (on its own device), moved to ``device``."""
    shape = (n,) if isinstance(n, int) else n
    source = generator.device if generator is not None else device
    return _to_device(torch.rand(shape, generator=generator, device=source), device)


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Integers uniform in ``{0, ..., high - 1}``, one per sample."""
    source = generator.device if generator is not None else device
    return _to_device(torch.randint(0, high, (n,), generator=generator, device=source), device)


def _uniform(lo: float, hi: float, n: int | tuple[int, ...], generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * _rand(n, generator, device)


def _warp(images: torch.Tensor, theta: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """One bilinear ``grid_sample`` of the whole batch; ``theta`` (N x 2 x 3) maps output to input
    normalised coordinates (``align_corners=False``). Keeps the input dtype."""
    dtype = images.dtype
    work = images.to(_work_dtype(images))
    grid = F.affine_grid(theta.to(work.dtype), list(work.shape), align_corners=False)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return _restore(out, dtype, scale=255.0) if dtype == torch.uint8 else out


def _per_sample(value: float | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        value = _to_device(value, device).to(torch.float32)
        return value.expand(n) if value.dim() == 0 else value.reshape(n)
    return torch.full((n,), float(value), device=device)


# ------------------------------------------------------------------------------------ basic conversions


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) -> float32 in [0, 1]; floating-point input is returned unchanged."""
    _check_batch(images)
    if images.is_floating_point():
        return images
    if images.dtype != torch.uint8:
        raise FbenchError(f"batch transforms take uint8 or floating-point images (got {images.dtype})")
    return images.to(torch.float32).div_(255.0)


def normalize(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``(images - mean) / std`` per channel. uint8 input is first scaled to [0, 1].

    ``mean`` and ``std`` hold one value per channel, or a single value for all channels."""
    images = to_float(images)
    channels = images.shape[1]
    mean_t = _to_device(torch.as_tensor(mean), images.device).to(images.dtype).reshape(-1)
    std_t = _to_device(torch.as_tensor(std), images.device).to(images.dtype).reshape(-1)
    for what, values in (("mean", mean_t), ("std", std_t)):
        if values.numel() not in (1, channels):
            raise FbenchError(
                f"normalize: {what} has {values.numel()} values for a batch with {channels} channels; give one "
                f"value per channel (use spec.with_input(channels={channels}) to adapt an architecture's spec)"
            )
    return (images - mean_t.view(1, -1, 1, 1)) / std_t.view(1, -1, 1, 1)


def eval_transform(images: torch.Tensor, spec: ArchitectureSpec) -> torch.Tensor:
    """The evaluation transform: :func:`to_float` then :func:`normalize` with the spec's mean and std."""
    return normalize(to_float(images), spec.mean, spec.std)


# ------------------------------------------------------------------------------------------- geometric


def hflip(images: torch.Tensor, generator: torch.Generator | None, p: float = 0.5) -> torch.Tensor:
    """Flip each sample left-right with probability ``p`` (one draw per sample; p=1 flips all, p=0 none)."""
    _check_batch(images)
    if p <= 0:
        return images
    if p >= 1:
        return images.flip(-1)
    flip = _rand(images.shape[0], generator, images.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def rotate(images: torch.Tensor, degrees: float | torch.Tensor, zoom: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Rotate each sample by ``degrees`` (a number or one value per sample; positive = counter-clockwise as
    displayed) about the image centre, black border, then zoom about the centre by ``zoom`` (> 1 enlarges,
    like a resize by ``zoom`` followed by a centre crop back to the input size). Bilinear, one grid_sample."""
    _check_batch(images)
    n, _, h, w = images.shape
    device = images.device
    radians = _per_sample(degrees, n, device) * (math.pi / 180.0)
    z = _per_sample(zoom, n, device)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # Output pixel offset (x', y') from the centre reads input offset R^-1 (x', y') / zoom, with
    # R^-1 = [[cos, -sin], [sin, cos]] in display coordinates (y down); normalised by W/2 and H/2.
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = cos / z
    theta[:, 0, 1] = -sin * (h / w) / z
    theta[:, 1, 0] = sin * (w / h) / z
    theta[:, 1, 1] = cos / z
    return _warp(images, theta, padding_mode="zeros")


def rotate_zoom(images: torch.Tensor, generator: torch.Generator | None, max_degrees: float = 15,
                zoom: float = 72 / 64, integer_degrees: bool = True) -> torch.Tensor:
    """LANMSFF's third variant: a random rotation per sample in ``[-max_degrees, max_degrees]`` about the
    centre with a black border, then a centre zoom by ``zoom`` (rotate, resize to 72, centre-crop 64 is
    ``zoom=72/64``). With ``integer_degrees`` (the reference's ``randint``) the angle is a whole number of
    degrees, uniform over ``{-floor(max), ..., floor(max)}``; otherwise uniform in the interval."""
    _check_batch(images)
    n = images.shape[0]
    if integer_degrees:
        limit = int(math.floor(max_degrees))
        angles = (_randint(2 * limit + 1, n, generator, images.device) - limit).to(torch.float32)
    else:
        angles = _uniform(-max_degrees, max_degrees, n, generator, images.device)
    return rotate(images, angles, zoom)


def resize_crop(images: torch.Tensor, generator: torch.Generator | None, resize: int = 72, crop: int = 64,
                mode: Literal["random", "center"] = "random") -> torch.Tensor:
    """LANMSFF's fourth variant generalised to the batch's size: resize by ``resize / crop`` (72/64: 64 -> 72)
    and crop back to the input size, at a per-sample integer offset (in resized pixels) uniform over
    ``{0, ..., round(H * resize / crop) - H}`` for rows and likewise for columns (``mode="random"``), or
    at the centre (``mode="center"``). One bilinear grid_sample with border clamping, which equals
    ``F.interpolate(bilinear, align_corners=False)`` followed by the crop."""
    _check_batch(images)
    if mode not in ("random", "center"):
        raise FbenchError(f"resize_crop: mode must be 'random' or 'center' (got {mode!r})")
    if crop <= 0 or resize < crop:
        raise FbenchError(f"resize_crop needs resize >= crop > 0 (got resize={resize}, crop={crop})")
    n, _, h, w = images.shape
    device = images.device
    big_h, big_w = round(h * resize / crop), round(w * resize / crop)
    sy, sx = big_h / h, big_w / w
    if mode == "center":
        oy = torch.full((n,), (big_h - h) / 2.0, device=device)
        ox = torch.full((n,), (big_w - w) / 2.0, device=device)
    else:
        oy = _randint(big_h - h + 1, n, generator, device).to(torch.float32)
        ox = _randint(big_w - w + 1, n, generator, device).to(torch.float32)
    # Output edge coordinate x' reads resized x' + ox, i.e. input (x' + ox) / s; in normalised units.
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = 1.0 / sx
    theta[:, 1, 1] = 1.0 / sy
    theta[:, 0, 2] = 1.0 / sx - 1.0 + 2.0 * ox / (sx * w)
    theta[:, 1, 2] = 1.0 / sy - 1.0 + 2.0 * oy / (sy * h)
    return _warp(images, theta, padding_mode="border")


def random_resized_crop(images: torch.Tensor, generator: torch.Generator | None,
                        scale: tuple[float, float] = (0.8, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop`` per sample, output the input size: a crop of area fraction
    uniform in ``scale`` and aspect ratio (width/height, in pixels) log-uniform in ``ratio`` at a uniform
    position, resized back (bilinear). As in torchvision, up to ``attempts`` draws per sample are tried and the
    first that fits is used (all drawn at once), falling back to the central crop; crop sizes and positions are
    continuous rather than rounded to whole pixels."""
    _check_batch(images)
    lo, hi = float(scale[0]), float(scale[1])
    if not 0 < lo <= hi <= 1:
        raise FbenchError(f"random_resized_crop: scale must satisfy 0 < min <= max <= 1 (got {tuple(scale)})")
    if not 0 < ratio[0] <= ratio[1]:
        raise FbenchError(f"random_resized_crop: ratio must satisfy 0 < min <= max (got {tuple(ratio)})")
    n, _, h, w = images.shape
    device = images.device
    area = _uniform(lo, hi, (n, attempts), generator, device)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand((n, attempts), generator, device))
    # Crop width and height as fractions of the image: w_pix = sqrt(A H W r), h_pix = sqrt(A H W / r).
    wf = torch.sqrt(area * aspect * (h / w))
    hf = torch.sqrt(area / aspect * (w / h))
    valid = (wf <= 1.0) & (hf <= 1.0)
    first = torch.argmax(valid.to(torch.uint8), dim=1, keepdim=True)  # first valid attempt (0 if none)
    any_valid = valid.any(dim=1)
    in_ratio = w / h  # torchvision's fallback: the central crop with the ratio clamped into range
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = 1.0, (w / ratio[0]) / h
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = (h * ratio[1]) / w, 1.0
    else:
        fallback_w, fallback_h = 1.0, 1.0
    wf = torch.where(any_valid, wf.gather(1, first).squeeze(1), fallback_w)
    hf = torch.where(any_valid, hf.gather(1, first).squeeze(1), fallback_h)
    x0 = _rand(n, generator, device) * (1.0 - wf)
    y0 = _rand(n, generator, device) * (1.0 - hf)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = wf
    theta[:, 1, 1] = hf
    theta[:, 0, 2] = 2.0 * x0 + wf - 1.0
    theta[:, 1, 2] = 2.0 * y0 + hf - 1.0
    return _warp(images, theta, padding_mode="border")


# ------------------------------------------------------------------------------------------ photometric


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W luma (torchvision weights); a 1-channel batch is its own grayscale."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.to(images.dtype).view(-1, 1, 1, 1)
    return (f * images + (1.0 - f) * other).clamp_(0.0, 1.0)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Multiply each sample (float, [0, 1]) by its factor, clamped to [0, 1] (torchvision's formula)."""
    return _blend(images, torch.zeros_like(images), factors)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each sample with the mean of its grayscale image (torchvision's formula)."""
    mean = _grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, factors)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend each sample with its grayscale image (torchvision's formula); identity for 1-channel input."""
    if images.shape[1] == 1:
        return images
    return _blend(images, _grayscale(images), factors)


def _rgb_to_hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = images.unbind(dim=1)
    maxc = images.amax(dim=1)
    minc = images.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Case-free form of the sextant table: channel n in (5, 3, 1) for (R, G, B) is
    # v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6.
    n = torch.arange(5.0, 0.0, -2.0, dtype=h.dtype, device=h.device).view(1, 3, 1, 1)  # made on the device
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (v.unsqueeze(1) * (1.0 - s.unsqueeze(1) * weight)).clamp_(0.0, 1.0)


def adjust_hue(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Shift each sample's hue by its factor in [-0.5, 0.5] (in turns) through RGB -> HSV -> RGB;
    identity for 1-channel input."""
    if images.shape[1] == 1:
        return images
    h, s, v = _rgb_to_hsv(images)
    h = torch.remainder(h + factors.to(h.dtype).view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def _jitter_range(name: str, value: float | Sequence[float], center: float, bound: tuple[float, float] | None
                  ) -> tuple[float, float] | None:
    """torchvision's ColorJitter ranges: a number v gives [center - v, center + v] (clipped to ``bound``);
    a pair is taken as the range. ``None`` when the operation is off (range [center, center])."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise FbenchError(f"color_jitter: {name} must be non-negative (got {value})")
        lo, hi = center - float(value), center + float(value)
        if bound is not None:
            lo = max(lo, bound[0])
    else:
        if len(value) != 2:
            raise FbenchError(f"color_jitter: {name} must be a number or a (min, max) pair (got {value!r})")
        lo, hi = float(value[0]), float(value[1])
    if bound is not None and not bound[0] <= lo <= hi <= bound[1]:
        raise FbenchError(f"color_jitter: {name} range ({lo}, {hi}) must lie within {bound}")
    if lo == hi == center:
        return None
    return lo, hi


# name -> (identity value, allowed range of the factor, operation), in the order they are applied.
_JITTER: dict[str, tuple[float, tuple[float, float], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "brightness": (1.0, (0.0, math.inf), adjust_brightness),
    "contrast": (1.0, (0.0, math.inf), adjust_contrast),
    "saturation": (1.0, (0.0, math.inf), adjust_saturation),
    "hue": (0.0, (-0.5, 0.5), adjust_hue),
}


def _jitter_ranges(strengths: Mapping[str, Any]) -> list[tuple[tuple[float, float] | None, Callable[..., Any]]]:
    return [(_jitter_range(name, strengths[name], center, bound), op)
            for name, (center, bound, op) in _JITTER.items()]


def color_jitter(images: torch.Tensor, generator: torch.Generator | None, brightness: float = 0,
                 contrast: float = 0, saturation: float = 0, hue: float = 0) -> torch.Tensor:
    """torchvision's ``ColorJitter`` with factors drawn per sample, applied in the fixed order brightness,
    contrast, saturation, hue. Brightness/contrast/saturation factors are uniform in
    ``[max(0, 1 - v), 1 + v]``; the hue shift is uniform in ``[-hue, hue]`` (hue <= 0.5); a (min, max) pair is
    also accepted. Zero strengths are skipped (exact identity). Saturation and hue do nothing to 1-channel
    batches. Works in float [0, 1]; uint8 in gives uint8 out."""
    _check_batch(images)
    strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
    ranges = _jitter_ranges(strengths)
    if all(bounds is None for bounds, _ in ranges):
        return images
    dtype = images.dtype
    out = to_float(images)
    n = out.shape[0]
    for bounds, op in ranges:
        if bounds is not None:
            out = op(out, _uniform(bounds[0], bounds[1], n, generator, out.device))
    return _restore(out, dtype) if dtype == torch.uint8 else out


# ------------------------------------------------------------------------------------- recipe -> steps

Step = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _identity(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return images


def _build_original(params: Mapping[str, Any], offline: bool) -> Step:
    return _identity


def _build_hflip(params: Mapping[str, Any], offline: bool) -> Step:
    p = 1.0 if offline else float(params.get("p", 0.5))
    return lambda images, generator: hflip(images, generator, p=p)


def _zoom_from(params: Mapping[str, Any], name: str) -> float:
    if "zoom" in params:
        return float(params["zoom"])
    resize, crop = float(params.get("resize", 72)), float(params.get("crop", 64))
    if crop <= 0 or resize < crop:
        raise FbenchError(f"augment {name!r}: needs resize >= crop > 0 (got resize={resize}, crop={crop})")
    return resize / crop


def _build_rotate_zoom(params: Mapping[str, Any], offline: bool) -> Step:
    if params.get("crop_mode", "center") != "center":
        raise FbenchError(f"augment 'rotate_zoom': crop_mode must be 'center' (got {params['crop_mode']!r})")
    max_degrees = float(params.get("max_degrees", 15))
    zoom = _zoom_from(params, "rotate_zoom")
    integer = bool(params.get("integer_degrees", True))
    return lambda images, generator: rotate_zoom(images, generator, max_degrees=max_degrees, zoom=zoom,
                                                 integer_degrees=integer)


def _build_resize_crop(params: Mapping[str, Any], offline: bool) -> Step:
    resize, crop = int(params.get("resize", 72)), int(params.get("crop", 64))
    mode = params.get("crop_mode", "random")
    if mode not in ("random", "center"):
        raise FbenchError(f"augment 'resize_crop': crop_mode must be 'random' or 'center' (got {mode!r})")
    if crop <= 0 or resize < crop:
        raise FbenchError(f"augment 'resize_crop': needs resize >= crop > 0 (got resize={resize}, crop={crop})")
    return lambda images, generator: resize_crop(images, generator, resize=resize, crop=crop, mode=mode)


def _build_random_resized_crop(params: Mapping[str, Any], offline: bool) -> Step:
    scales = tuple(float(v) for v in params.get("scale", (0.8, 1.0)))
    ratios = tuple(float(v) for v in params.get("ratio", (3 / 4, 4 / 3)))
    if len(scales) != 2 or not 0 < scales[0] <= scales[1] <= 1:
        raise FbenchError(f"augment 'random_resized_crop': scale must be (min, max) in (0, 1] (got {scales})")
    if len(ratios) != 2 or not 0 < ratios[0] <= ratios[1]:
        raise FbenchError(f"augment 'random_resized_crop': ratio must be (min, max) > 0 (got {ratios})")
    scale, ratio = (scales[0], scales[1]), (ratios[0], ratios[1])
    return lambda images, generator: random_resized_crop(images, generator, scale=scale, ratio=ratio)


def _build_color_jitter(params: Mapping[str, Any], offline: bool) -> Step:
    kwargs = {name: params.get(name, 0) for name in _JITTER}
    _jitter_ranges(kwargs)  # validate now, not mid-training
    return lambda images, generator: color_jitter(images, generator, **kwargs)


@dataclass(frozen=True)
class _AugmentKind:
    build: Callable[[Mapping[str, Any], bool], Step]
    params: tuple[str, ...]
    description: str


AUGMENTS: dict[str, _AugmentKind] = {
    "original": _AugmentKind(_build_original, (), "identity (the unaugmented image)"),
    "hflip": _AugmentKind(_build_hflip, ("p",), "left-right flip with probability p (0.5; always when offline)"),
    "rotate_zoom": _AugmentKind(_build_rotate_zoom, ("max_degrees", "resize", "crop", "crop_mode", "zoom",
                                                     "integer_degrees"),
                                "random rotation, black border, then centre zoom by resize/crop"),
    "resize_crop": _AugmentKind(_build_resize_crop, ("resize", "crop", "crop_mode"),
                                "resize by resize/crop then crop back at a random or centre offset"),
    "random_resized_crop": _AugmentKind(_build_random_resized_crop, ("scale", "ratio"),
                                        "torchvision-style RandomResizedCrop to the input size"),
    "color_jitter": _AugmentKind(_build_color_jitter, ("brightness", "contrast", "saturation", "hue"),
                                 "torchvision-style ColorJitter, per-sample factors"),
}


def _build_step(augment: Augment, offline: bool) -> Step:
    kind = AUGMENTS.get(augment.name)
    if kind is None:
        raise FbenchError(
            f"unknown augmentation {augment.name!r}; known augmentations: {', '.join(sorted(AUGMENTS))}"
        )
    unknown = sorted(set(augment.params) - set(kind.params))
    if unknown:
        accepted = ", ".join(kind.params) or "none"
        raise FbenchError(
            f"augmentation {augment.name!r} has no parameter {', '.join(map(repr, unknown))}; accepted: {accepted}"
        )
    try:
        return kind.build(augment.params, offline)
    except (TypeError, ValueError) as error:
        raise FbenchError(f"augmentation {augment.name!r}: bad parameters {dict(augment.params)!r}: {error}"
                          ) from None


class BatchAugment:
    """A recipe's augmentation as a batch transform on the device.

    * ``mode="online"``: ``__call__`` applies every step in order, each with its own per-sample draws, then
      normalises (float32 out). Use it on every training batch.
    * ``mode="offline"`` (LANMSFF): :meth:`expand_offline` turns a set of images into one row per listed
      augmentation (hflip always flips), done once before training; ``__call__`` then only normalises, since the
      training set already holds the augmented variants.
    """

    def __init__(self, augments: Sequence[Augment], mean: Sequence[float], std: Sequence[float],
                 mode: Literal["online", "offline"] = "online"):
        if mode not in ("online", "offline"):
            raise FbenchError(f"augmentation_mode must be 'online' or 'offline' (got {mode!r})")
        self.augments = tuple(augments)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.mode = mode
        self._online = tuple(_build_step(a, offline=False) for a in self.augments)
        self._offline = tuple(_build_step(a, offline=True) for a in self.augments)

    @classmethod
    def from_recipe(cls, recipe: Recipe, spec: ArchitectureSpec) -> BatchAugment:
        """The recipe's augmentation steps and mode, with the spec's mean and std."""
        return cls(recipe.augmentation, spec.mean, spec.std, recipe.augmentation_mode)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.augments)

    def augment(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The online steps in order, without normalisation (float [0, 1] out)."""
        out = to_float(images)
        for step in self._online:
            out = step(out, generator)
        return out

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Training batch (uint8 or float [0, 1]) -> augmented (online mode) and normalised float32 batch."""
        out = self.augment(images, generator) if self.mode == "online" else to_float(images)
        return normalize(out, self.mean, self.std)

    @property
    def offline_copies(self) -> int:
        """Rows per training image after ``expand_offline`` (1 in online mode or without augmentations)."""
        return len(self._offline) if self.mode == "offline" and self._offline else 1

    def expand_offline(self, images: torch.Tensor, generator: torch.Generator | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """One variant of every image per listed augmentation, each applied to the original image.

        Returns ``(expanded, source_index)``: ``expanded`` holds ``len(augments) * N`` rows in blocks, one
        block per augmentation in recipe order (for LANMSFF: rows 0..N-1 original, N..2N-1 flipped, then
        rotate_zoom, then resize_crop), in the input dtype (uint8 in, uint8 out, so it can be cached);
        ``source_index[r]`` is the input row that ``expanded[r]`` comes from (``arange(N)`` repeated once per
        block), so ``labels[source_index]`` labels the expanded set."""
        _check_batch(images)
        n = images.shape[0]
        index = torch.arange(n, device=images.device)
        if not self._offline:
            return images, index
        blocks = [step(images, generator) for step in self._offline]
        return torch.cat(blocks, dim=0), index.repeat(len(blocks))

    def __repr__(self) -> str:
        steps = ", ".join(f"{a.name}({', '.join(f'{k}={v}' for k, v in a.params.items())})" for a in self.augments)
        return f"BatchAugment(mode={self.mode!r}, steps=[{steps}], mean={self.mean}, std={self.std})"
