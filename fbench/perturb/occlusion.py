"""Occluders over the face: rectangles, eye and mouth bands, textured natural-looking patches, and hands.

``severity`` is the fraction of the face box (``FaceFrame.face_box``: forehead to chin, cheek to cheek) that
the occluder covers for ``rectangle``, ``texture`` and ``hand``; for ``eye_band`` and ``mouth_band`` it scales
the band's height (1: 0.7 of the eye-to-chin distance). A band placed by uncertain landmarks (calibrated positions,
see ``fbench.perturb.face``) is padded by their spread on every side, so that it covers the points wherever they
may be: severity keeps its meaning (the band's nominal height) and the padding comes on top. Severity 0 leaves the
images unchanged. Every random
choice (position, colour, texture, hand pose) comes from the sample's key.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from typing import Any, ClassVar

import torch

from fbench.errors import FbenchError
from fbench.perturb.base import Perturbation
from fbench.perturb.face import FaceFrame
from fbench.perturb.keys import uniform
from fbench.perturb.landmarks import fill_missing
from fbench.perturb.params import validate_params
from fbench.perturb.raster import (
    bump,
    col,
    composite,
    coverage,
    sdf_box,
    sdf_capsule,
    sdf_ellipse,
    segment_param,
    unit_from_tangent,
    value_noise,
    wave,
)
from fbench.registry import register_perturbation

KINDS = ("rectangle", "eye_band", "mouth_band", "texture", "hand")
BAND_HALF_HEIGHT = 0.35  # at severity 1, in units of the eye-to-chin distance
MAX_RECTANGLES = 3

# Random streams (one per use, so adding a draw never shifts another).
_RECT, _BAND, _TEXTURE, _NOISE, _HAND = 101, 102, 103, 104, 105

Layer = tuple[torch.Tensor, torch.Tensor]  # alpha (N, H, W), RGB colour (N, 3) or (N, 3, H, W)


def _flat_colour(r_mode: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor) -> torch.Tensor:
    """Black (35 %), grey (35 %) or a random colour (30 %), as (N, 3)."""
    black = (0.02 + 0.08 * r1)[:, None].expand(-1, 3)
    grey = (0.25 + 0.5 * r1)[:, None].expand(-1, 3)
    random = torch.stack([r1, r2, r3], dim=1)
    mode = r_mode[:, None]
    return torch.where(mode < 0.35, black, torch.where(mode < 0.70, grey, random))


def _rectangles(frame: FaceFrame, keys: torch.Tensor, severity: float) -> list[Layer]:
    """1 to 3 rectangles in disjoint strips of the face box, each covering ``severity`` of its strip."""
    u, v = frame.grid()
    u0, u1, v0, v1 = frame.face_box()
    r = uniform(keys, _RECT, 4 + 8 * MAX_RECTANGLES)
    count = 1 + torch.clamp(torch.floor(r[:, 0] * MAX_RECTANGLES), max=MAX_RECTANGLES - 1)
    vertical = r[:, 1] < 0.5  # strips side by side (split along u) or stacked (split along v)
    width, height = u1 - u0, v1 - v0
    span = torch.where(vertical, width, height) / count   # strip size along the split axis
    other = torch.where(vertical, height, width)          # strip size across it
    layers = []
    for j in range(MAX_RECTANGLES):
        q = r[:, 4 + 8 * j: 12 + 8 * j]
        # Rectangle sides: ratio * span along the split, (severity / ratio) * other across; ratio in [s, 1].
        ratio = severity + (1.0 - severity) * q[:, 0]
        along, across = span * ratio, other * (severity / ratio)
        start_along = span * j + (span - along) * q[:, 1]
        start_across = (other - across) * q[:, 2]
        cu = torch.where(vertical, u0 + start_along + along / 2, u0 + start_across + across / 2)
        cv = torch.where(vertical, v0 + start_across + across / 2, v0 + start_along + along / 2)
        hu = torch.where(vertical, along, across) / 2
        hv = torch.where(vertical, across, along) / 2
        # Half a pixel in from the target edges, so that the anti-aliased fringe ends on them and the changed
        # pixels cover the target fraction.
        inset = 0.5 / frame.scale
        hu, hv = torch.clamp(hu - inset, min=0.0), torch.clamp(hv - inset, min=0.0)
        sdf = sdf_box(u, v, col(cu), col(cv), col(hu), col(hv)) * col(frame.scale)
        alpha = coverage(sdf) * col((j < count).to(u.dtype))
        layers.append((alpha, _flat_colour(q[:, 3], q[:, 4], q[:, 5], q[:, 6])))
    return layers


def _band(frame: FaceFrame, keys: torch.Tensor, severity: float, points: tuple[int, int]) -> list[Layer]:
    """A bar across the face through two landmarks (the eyes or the mouth corners), along the eye line, padded by
    their spread."""
    u, v = frame.grid()
    u0, u1, _v0, _v1 = frame.face_box()
    r = uniform(keys, _BAND, 4)
    pv = frame.points[..., 1]
    centre_v = (pv[:, points[0]] + pv[:, points[1]]) * 0.5
    spread = torch.maximum(frame.spread[:, points[0]], frame.spread[:, points[1]])  # (N, 2)
    half_height = BAND_HALF_HEIGHT * severity + spread[:, 1]
    half_width = (u1 - u0) * 0.5 + 0.08 + spread[:, 0]
    sdf = sdf_box(u, v, col((u0 + u1) * 0.5), col(centre_v), col(half_width), col(half_height))
    alpha = coverage(sdf * col(frame.scale))
    colour = torch.where(r[:, :1] < 0.7, (0.02 + 0.06 * r[:, 1:2]).expand(-1, 3),
                         _flat_colour(r[:, 1] * 0.7 + 0.3, r[:, 1], r[:, 2], r[:, 3]))
    return [(alpha, colour)]


def _polar_blob(u: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, cv: torch.Tensor, radius: torch.Tensor,
                amplitudes: list[torch.Tensor], phases: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Approximate signed distance to a blob r(phi) = R (1 + a2 sin(2 phi + p2) + a3 sin(3 phi + p3)
    + a5 sin(5 phi + p5)), with multiple-angle formulas instead of trigonometric functions."""
    du, dv = u - col(cu), v - col(cv)
    rho = torch.sqrt(du * du + dv * dv)
    safe = torch.clamp(rho, min=1e-9)
    c, s = du / safe, dv / safe
    c = torch.where(rho > 1e-9, c, torch.ones_like(c))
    s = torch.where(rho > 1e-9, s, torch.zeros_like(s))
    c2, s2 = c * c - s * s, 2 * c * s
    c3, s3 = c * (4 * c * c - 3), s * (3 - 4 * s * s)
    cc, ss = c * c, s * s
    c5, s5 = c * (16 * cc * cc - 20 * cc + 5), s * (16 * ss * ss - 20 * ss + 5)
    wobble = torch.zeros_like(rho)
    for a, (ck, sk), (pc, ps) in zip(amplitudes, ((c2, s2), (c3, s3), (c5, s5)), phases):
        wobble = wobble + col(a) * (sk * col(pc) + ck * col(ps))
    edge = col(radius) * (1.0 + wobble)
    return (rho - edge) * 0.85


def _unit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = 2 * x - 1, 2 * y - 1
    n = torch.sqrt(x * x + y * y)
    ok = n > 1e-3
    n = torch.clamp(n, min=1e-3)
    return torch.where(ok, x / n, torch.ones_like(x)), torch.where(ok, y / n, torch.zeros_like(y))


def _texture(frame: FaceFrame, keys: torch.Tensor, severity: float) -> list[Layer]:
    """An irregular blob of leaf, bark, fabric or mossy-stone texture covering ``severity`` of the face box."""
    u, v = frame.grid()
    u0, u1, v0, v1 = frame.face_box()
    r = uniform(keys, _TEXTURE, 32)
    amplitudes = [0.08 + 0.12 * r[:, 0], 0.05 + 0.08 * r[:, 1], 0.02 + 0.05 * r[:, 2]]
    phases = [_unit(r[:, 3 + 2 * k], r[:, 4 + 2 * k]) for k in range(3)]
    area = severity * (u1 - u0) * (v1 - v0)
    spread = 1.0 + 0.5 * (amplitudes[0] ** 2 + amplitudes[1] ** 2 + amplitudes[2] ** 2)
    radius = torch.sqrt(area / (math.pi * spread))
    cu = (u0 + u1) * 0.5 + (2 * r[:, 9] - 1) * torch.clamp((u1 - u0) * 0.5 - 0.8 * radius, min=0.0)
    cv = (v0 + v1) * 0.5 + (2 * r[:, 10] - 1) * torch.clamp((v1 - v0) * 0.5 - 0.8 * radius, min=0.0)
    sdf = _polar_blob(u, v, cu, cv, radius, amplitudes, phases)
    # Texture coordinates: turned by a random angle, in units of the blob radius.
    tc, ts = _unit(r[:, 11], r[:, 12])
    du, dv = u - col(cu), v - col(cv)
    tu = (du * col(tc) + dv * col(ts)) / col(radius)
    tv = (dv * col(tc) - du * col(ts)) / col(radius)
    coarse = value_noise(keys, _NOISE, tu * 1.5 + 3.0, tv * 1.5 + 3.0, cells=8, octaves=3)
    streaks = value_noise(keys, _NOISE + 1, tu * 1.2 + 3.0, tv * 7.0 + 8.0, cells=24, octaves=2)
    # A ragged edge.
    sdf = sdf + (coarse - 0.5) * 0.25 * col(radius)
    pixels = 1.0 / col(radius * frame.scale)  # one pixel in texture units

    def tint(base: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:  # (N, 3) x (N, H, W) -> (N, 3, H, W)
        return base[:, :, None, None] * amount[:, None]

    # Leaf: green with a lighter midrib and side veins, mottled.
    leaf_base = torch.stack([0.10 + 0.20 * r[:, 13], 0.30 + 0.25 * r[:, 14], 0.05 + 0.12 * r[:, 15]], dim=1)
    midrib = bump(tv / (0.03 + 2 * pixels))
    veins = bump((wave(tu * 2.5 + tv.abs() * 1.8) - 1.0) / (0.08 + 6 * pixels)) * (tv.abs() < 0.9)
    leaf = tint(leaf_base, 0.75 + 0.5 * coarse) + 0.25 * (midrib + 0.6 * veins)[:, None]
    # Bark: brown streaks with dark cracks.
    bark_base = torch.stack([0.30 + 0.15 * r[:, 16], 0.20 + 0.10 * r[:, 16], 0.12 + 0.06 * r[:, 17]], dim=1)
    cracks = bump((streaks - 0.42) / 0.06)
    bark = tint(bark_base, (0.55 + 0.8 * streaks) * (1.0 - 0.6 * cracks))
    # Fabric: woven threads under a plaid of two colours.
    fabric_a = torch.stack([r[:, 18], r[:, 19], r[:, 20]], dim=1) * 0.8 + 0.1
    fabric_b = torch.stack([r[:, 21], r[:, 22], r[:, 23]], dim=1) * 0.8 + 0.1
    period = 4.0 * pixels  # a thread every two pixels or so
    weave = wave(tu / period) * 0.5 + wave(tv / period) * 0.5
    plaid = torch.maximum(bump((wave(tu * 3.0) - 1.0) / 0.35), bump((wave(tv * 3.0) - 1.0) / 0.35))
    fabric = (tint(fabric_a, 1.0 - plaid) + tint(fabric_b, plaid)) * (0.82 + 0.18 * weave)[:, None]
    # Stone with moss: grey noise, green where the noise is high.
    grey = (0.35 + 0.3 * r[:, 24])[:, None].expand(-1, 3)
    moss = torch.stack([0.25 + 0.1 * r[:, 25], 0.40 + 0.15 * r[:, 25], 0.12 + 0.05 * r[:, 25]], dim=1)
    mossy = torch.clamp((coarse - 0.55) / 0.15, 0.0, 1.0)
    stone = (tint(grey, 0.6 + 0.8 * streaks * coarse) * (1 - mossy[:, None])
             + tint(moss, 0.8 + 0.4 * streaks) * mossy[:, None])
    kind = torch.floor(r[:, 26] * 4).reshape(-1, 1, 1, 1)
    colour = torch.where(kind < 1, leaf, torch.where(kind < 2, bark, torch.where(kind < 3, fabric, stone)))
    # Rounded look: darker towards the rim.
    rim = torch.clamp(-sdf / (0.25 * col(radius)), 0.0, 1.0)
    colour = torch.clamp(colour * (0.7 + 0.3 * rim)[:, None], 0.0, 1.0)
    return [(coverage(sdf * col(frame.scale)), colour)]


# The hand, in units of its palm width, fingers up (-y), thumb towards -x; mirrored at random.
PALM = (0.0, 0.02, 0.47, 0.55)  # centre x, y; radii
FINGERS = (  # base x, base y, length, radius, splay (x per unit length)
    (-0.33, -0.30, 0.80, 0.105, -0.14),
    (-0.11, -0.36, 0.90, 0.110, -0.04),
    (0.11, -0.34, 0.84, 0.105, 0.05),
    (0.33, -0.25, 0.64, 0.092, 0.15),
)
THUMB = ((-0.36, 0.22), (-0.64, -0.02), (-0.80, -0.24), 0.125)
HAND_CENTRE = (-0.08, -0.32)  # the hand's centre of area


def _hand_parts(x: torch.Tensor, y: torch.Tensor, spread: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                                 list[torch.Tensor]]:
    """Signed distances (hand units) of the palm (with the thumb) and of each finger; finger length params."""
    px, py, rx, ry = PALM
    palm = sdf_ellipse(x, y, px, py, rx, ry)
    (ax, ay), (bx, by), (cx, cy), tr = THUMB
    thumb = torch.minimum(sdf_capsule(x, y, ax, ay, bx, by, tr), sdf_capsule(x, y, bx, by, cx, cy, tr * 0.92))
    palm = torch.minimum(palm, thumb)
    fingers, params = [], []
    for bx0, by0, length, radius, splay in FINGERS:
        tip_dx = splay * spread
        dn = torch.sqrt(tip_dx * tip_dx + 1.0)  # the direction (tip_dx, -1), normalised
        tx, ty = bx0 + length * tip_dx / dn, by0 - length / dn
        fingers.append(sdf_capsule(x, y, bx0, by0, tx, ty, radius))
        params.append(segment_param(x, y, bx0, by0, tx, ty))
    return palm, fingers, params


@functools.lru_cache(maxsize=1)
def hand_area() -> float:
    """The hand's area in palm-width units squared (numerically, at the mean finger spread)."""
    n = 600
    axis = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 3.0 - 1.5
    x, y = axis.reshape(1, 1, n), axis.reshape(1, n, 1)
    palm, fingers, _ = _hand_parts(x, y, torch.ones(1, 1, 1))
    union = palm
    for f in fingers:
        union = torch.minimum(union, f)
    return float((union < 0).float().mean()) * 9.0


def _hand(frame: FaceFrame, keys: torch.Tensor, severity: float) -> list[Layer]:
    """A skin-toned hand (palm, four fingers, thumb) over the lower or central face, ``severity`` of its area."""
    u, v = frame.grid()
    u0, u1, v0, v1 = frame.face_box()
    r = uniform(keys, _HAND, 16)
    size = torch.sqrt(severity * (u1 - u0) * (v1 - v0) / hand_area())  # palm width in frame units
    # Rotation in [-100, 100] degrees from fingers-up: cos, sin of 2 * atan(t), |t| <= tan(50 degrees).
    cos, sin = unit_from_tangent((2 * r[:, 3] - 1) * 1.19)
    mirror = torch.where(r[:, 4] < 0.5, -1.0, 1.0)
    # The hand's middle (HAND_CENTRE, between palm and fingers) over the mouth and chin, or the nose and cheeks.
    lower = r[:, 0] < 0.6
    target_v = torch.where(lower, 0.55 + 0.25 * r[:, 1], 0.25 + 0.25 * r[:, 1])
    target_u = (u0 + u1) * 0.5 + (2 * r[:, 2] - 1) * 0.18 * (u1 - u0)
    ox, oy = HAND_CENTRE[0] * mirror * size, HAND_CENTRE[1] * size
    cu = target_u - (ox * cos - oy * sin)
    cv = target_v - (ox * sin + oy * cos)
    spread = 0.3 + 1.2 * r[:, 5]
    du, dv = u - col(cu), v - col(cv)
    hx = (du * col(cos) + dv * col(sin)) / col(size) * col(mirror)
    hy = (dv * col(cos) - du * col(sin)) / col(size)
    palm, fingers, along = _hand_parts(hx, hy, col(spread))
    union = palm
    for f in fingers:
        union = torch.minimum(union, f)
    pixel = 1.0 / col(size * frame.scale)  # one pixel in hand units
    line = 1.2 * pixel
    shade = 0.80 + 0.20 * torch.clamp(-union / 0.12, 0.0, 1.0)
    parts = [palm] + fingers
    for i, finger in enumerate(fingers):
        others = parts[0]
        for j, other in enumerate(fingers):
            if j != i:
                others = torch.minimum(others, other)
        outline = torch.clamp(1.0 - finger.abs() / line, 0.0, 1.0) * torch.clamp(-others / line + 0.5, 0.0, 1.0)
        creases = (bump((along[i] - 0.52) * FINGERS[i][2] / line) + bump((along[i] - 0.78) * FINGERS[i][2] / line))
        shade = shade * (1.0 - 0.35 * outline) * (1.0 - 0.18 * creases * (finger < 0))
    light = torch.tensor([0.96, 0.80, 0.69], device=u.device)
    dark = torch.tensor([0.40, 0.26, 0.18], device=u.device)
    tone = r[:, 6:7]
    base = light + (dark - light) * tone
    base = base + torch.stack([0.04 * r[:, 7], 0.0 * r[:, 7], -0.03 * r[:, 7]], dim=1)
    colour = torch.clamp(base[:, :, None, None] * shade[:, None], 0.0, 1.0)
    return [(coverage(union * col(size * frame.scale)), colour)]


DRAW = {
    "rectangle": _rectangles,
    "eye_band": lambda frame, keys, severity: _band(frame, keys, severity, (0, 1)),
    "mouth_band": lambda frame, keys, severity: _band(frame, keys, severity, (3, 4)),
    "texture": _texture,
    "hand": _hand,
}


def render_layers(images: torch.Tensor, layers: list[Layer]) -> torch.Tensor:
    out = images
    for alpha, colour in layers:
        out = composite(out, alpha, colour)
    return torch.clamp(out, 0.0, 1.0)


def prepare(images: torch.Tensor, landmarks: torch.Tensor, keys: torch.Tensor
            ) -> tuple[torch.Tensor, FaceFrame, torch.Tensor]:
    """Float32 images, the face frame and the keys, all on the images' device."""
    if images.dim() != 4:
        raise FbenchError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    x = images.to(torch.float32)
    n, _c, h, w = x.shape
    lm = fill_missing(torch.as_tensor(landmarks).to(x.device))
    keys = torch.as_tensor(keys).to(device=x.device, dtype=torch.int64).reshape(-1)
    if lm.shape[0] != n or keys.shape[0] != n:
        raise FbenchError(f"got {n} images, {lm.shape[0]} landmark sets and {keys.shape[0]} keys; give one each")
    return x, FaceFrame.from_landmarks(lm, h, w), keys


class LayeredPerturbation(Perturbation):
    """A perturbation drawn as alpha-composited layers over the face: parameters are checked, severity 0
    leaves the images as they are, and subclasses only say which layers to draw."""

    @abstractmethod
    def layers(self, frame: FaceFrame, keys: torch.Tensor, params: dict[str, Any]) -> list[Layer]:
        """The layers to composite, for checked parameters with severity above 0."""

    def apply(self, images: torch.Tensor, landmarks: torch.Tensor, keys: torch.Tensor, **params: Any
              ) -> torch.Tensor:
        p = validate_params(self, params)
        if p["severity"] == 0.0 or images.shape[0] == 0:
            return images.clone()
        x, frame, keys = prepare(images, landmarks, keys)
        return render_layers(x, self.layers(frame, keys, p)).to(images.dtype)


@register_perturbation("occlusion")
class Occlusion(LayeredPerturbation):
    name: ClassVar[str] = "occlusion"
    description: ClassVar[str] = ("occluders over the face: rectangles, eye or mouth bands, textured natural "
                                  "patches (leaf, bark, fabric, stone), or a hand")
    parameters: ClassVar[dict[str, tuple[type, Any, tuple[Any, ...] | None]]] = {
        "kind": (str, "rectangle", KINDS),
        "severity": (float, 0.25, None),
    }

    def layers(self, frame: FaceFrame, keys: torch.Tensor, params: dict[str, Any]) -> list[Layer]:
        return DRAW[params["kind"]](frame, keys, float(params["severity"]))
