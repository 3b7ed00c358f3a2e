"""Vectorised rasterisation on (N, H, W) pixel grids, for the whole batch at once.

Shapes are signed distance fields (negative inside) evaluated on per-pixel coordinate tensors with per-sample
parameters; ``coverage`` turns a distance in pixels into an anti-aliased alpha, ``composite`` blends a colour
into images. Only exactly rounded arithmetic (+, -, *, /, sqrt, floor, min, max) and ``grid_sample`` are used
on per-pixel and per-sample tensors, so a sample's pixels do not depend on the size of the batch it is in
(vectorised transcendental functions may round differently from their scalar tails).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fbench.perturb.keys import uniform

EPS = 1e-9
LUMA = (0.299, 0.587, 0.114)


Scalar = torch.Tensor | float


def _positive(x: Scalar, like: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.as_tensor(x, dtype=like.dtype, device=like.device), min=EPS)


def col(t: torch.Tensor) -> torch.Tensor:
    """A per-sample (N,) tensor shaped (N, 1, 1) to broadcast against (N, H, W) grids."""
    return t.reshape(-1, 1, 1)


def pixel_grid(height: int, width: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates: x as (1, 1, W), y as (1, H, 1)."""
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    return xs.reshape(1, 1, width), ys.reshape(1, height, 1)


def rotate(du: torch.Tensor, dv: torch.Tensor, cos: Scalar, sin: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates in a frame turned by the angle (cos, sin): the inverse rotation of (du, dv)."""
    return du * cos + dv * sin, dv * cos - du * sin


def unit_from_tangent(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the angle 2 * atan(t), with rational arithmetic only."""
    t2 = t * t
    return (1.0 - t2) / (1.0 + t2), 2.0 * t / (1.0 + t2)


def sdf_box(u: torch.Tensor, v: torch.Tensor, cu: Scalar, cv: Scalar, hu: Scalar, hv: Scalar,
            cos: Scalar | None = None, sin: Scalar | None = None) -> torch.Tensor:
    """Exact signed distance to a (rotated) rectangle with centre (cu, cv) and half sizes (hu, hv)."""
    du, dv = u - cu, v - cv
    if cos is not None and sin is not None:
        du, dv = rotate(du, dv, cos, sin)
    qu, qv = du.abs() - hu, dv.abs() - hv
    outside = torch.sqrt(torch.clamp(qu, min=0.0) ** 2 + torch.clamp(qv, min=0.0) ** 2)
    return outside + torch.clamp(torch.maximum(qu, qv), max=0.0)


def sdf_ellipse(u: torch.Tensor, v: torch.Tensor, cu: Scalar, cv: Scalar, ru: Scalar, rv: Scalar,
                cos: Scalar | None = None, sin: Scalar | None = None) -> torch.Tensor:
    """Approximate signed distance to a (rotated) ellipse (exact on its boundary's first order)."""
    du, dv = u - cu, v - cv
    if cos is not None and sin is not None:
        du, dv = rotate(du, dv, cos, sin)
    k0 = torch.sqrt((du / ru) ** 2 + (dv / rv) ** 2)
    k1 = torch.sqrt((du / (ru * ru)) ** 2 + (dv / (rv * rv)) ** 2)
    return k0 * (k0 - 1.0) / torch.clamp(k1, min=EPS)


def sdf_capsule(u: torch.Tensor, v: torch.Tensor, au: Scalar, av: Scalar, bu: Scalar, bv: Scalar,
                radius: Scalar) -> torch.Tensor:
    """Signed distance to a capsule: the segment a-b thickened by ``radius``."""
    pu, pv = u - au, v - av
    eu, ev = bu - au, bv - av
    h = torch.clamp((pu * eu + pv * ev) / _positive(eu * eu + ev * ev, u), 0.0, 1.0)
    return torch.sqrt((pu - eu * h) ** 2 + (pv - ev * h) ** 2) - radius


def segment_param(u: torch.Tensor, v: torch.Tensor, au: Scalar, av: Scalar, bu: Scalar, bv: Scalar) -> torch.Tensor:
    """Where a point projects on the line a-b: 0 at a, 1 at b (unclamped)."""
    eu, ev = bu - au, bv - av
    return ((u - au) * eu + (v - av) * ev) / _positive(eu * eu + ev * ev, u)


def sdf_polygon(u: torch.Tensor, v: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Signed distance to per-sample polygons (even-odd rule), ``vertices`` (N, K, 2) in the grid's units.

    One pass over the K edges, each a handful of tensor ops on the whole (N, H, W) batch."""
    count = vertices.shape[1]
    best = None
    inside = torch.zeros(torch.broadcast_shapes(u.shape, v.shape), dtype=torch.bool, device=u.device)
    for i in range(count):
        a, b = vertices[:, i], vertices[:, (i + 1) % count]
        au, av, bu, bv = col(a[:, 0]), col(a[:, 1]), col(b[:, 0]), col(b[:, 1])
        pu, pv = u - au, v - av
        eu, ev = bu - au, bv - av
        h = torch.clamp((pu * eu + pv * ev) / torch.clamp(eu * eu + ev * ev, min=EPS), 0.0, 1.0)
        d2 = (pu - eu * h) ** 2 + (pv - ev * h) ** 2
        best = d2 if best is None else torch.minimum(best, d2)
        crosses = (av > v) != (bv > v)
        x_cross = au + eu * (v - av) / torch.where(ev == 0, torch.full_like(ev, EPS), ev)
        inside = inside ^ (crosses & (u < x_cross))
    assert best is not None
    distance = torch.sqrt(best)
    return torch.where(inside, -distance, distance)


def coverage(sdf_pixels: torch.Tensor, softness: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Anti-aliased alpha from a signed distance in pixels: 1 inside, 0 outside, a ramp ``softness`` wide."""
    return torch.clamp(0.5 - sdf_pixels / softness, 0.0, 1.0)


def smoothstep(edge0: float, edge1: float, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bump(x: torch.Tensor) -> torch.Tensor:
    """A smooth bell, 1 at 0 and 0 beyond |x| = 1 (a rational-free stand-in for exp(-x^2))."""
    t = torch.clamp(1.0 - x * x, min=0.0)
    return t * t


def wave(x: torch.Tensor) -> torch.Tensor:
    """A smooth periodic wave in [0, 1] with period 1 (a polynomial stand-in for (1 - cos 2 pi x) / 2)."""
    f = x - torch.floor(x)
    t = 1.0 - (2.0 * f - 1.0).abs()  # triangle, 0 at integers, 1 at half-integers
    return t * t * (3.0 - 2.0 * t)


def value_noise(keys: torch.Tensor, stream: int, u: torch.Tensor, v: torch.Tensor, cells: int,
                octaves: int = 3) -> torch.Tensor:
    """Per-sample fractal value noise in about [0, 1] at coordinates (u, v) (N, H, W) in lattice cells.

    Each octave is a (cells * 2^o + 4)^2 lattice of per-sample uniforms sampled bicubically, so the noise
    depends only on the sample's key and its coordinates."""
    n = u.shape[0]
    total = torch.zeros_like(u)
    weight_sum = 0.0
    for octave in range(octaves):
        size = cells * (2 ** octave) + 4
        lattice = uniform(keys, stream * 16 + octave, size * size).reshape(n, 1, size, size)
        scale = float(2 ** octave)
        # Lattice coordinates, offset by 2 cells; grid_sample with align_corners=True maps -1..1 to 0..size-1.
        gx = (u * scale + 2.0) * (2.0 / (size - 1)) - 1.0
        gy = (v * scale + 2.0) * (2.0 / (size - 1)) - 1.0
        grid = torch.stack([gx, gy], dim=-1)
        sample = F.grid_sample(lattice, grid, mode="bicubic", padding_mode="reflection", align_corners=True)
        w = 0.5 ** octave
        total = total + w * sample[:, 0]
        weight_sum += w
    return torch.clamp(total / weight_sum, 0.0, 1.0)


def to_channels(rgb: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, 3, ...) RGB -> (N, channels, ...): unchanged for 3 channels, ITU-R 601 luma otherwise."""
    if channels == 3:
        return rgb
    luma = rgb[:, 0:1] * LUMA[0] + rgb[:, 1:2] * LUMA[1] + rgb[:, 2:3] * LUMA[2]
    return luma.expand(luma.shape[0], channels, *luma.shape[2:])


def composite(images: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """``images * (1 - alpha) + colour * alpha`` with alpha (N, H, W) and colour (N, 3, H, W) or (N, 3) RGB."""
    channels = images.shape[1]
    if colour.dim() == 2:
        colour = colour[:, :, None, None]
    colour = to_channels(colour, channels)
    a = alpha[:, None]
    return images * (1.0 - a) + colour * a
