"""Face masks in the manner of MaskTheFace: surgical, cloth, N95 and KN95 masks fitted to the landmarks.

The mask is a patch of a curved surface on the head model of ``fbench.perturb.landmarks``: its top edge crosses
the nose bridge (40 % of the way from the eye line down to the nose tip) and falls towards the cheeks, its
sides reach the cheeks, its bottom wraps under the chin, and it tents over the nose. Each row of the patch is
projected with the sample's estimated yaw and its visible extent (nearest to farthest silhouette) becomes the
outline polygon, so a turned face shows the near side and the nose ridge, and a profile only the visible
half. The frame follows the eye line (roll) and the landmark scale.

The model is fitted to six landmarks, and a real face is not the model: where the measured nose tip, mouth corners
or chin lie past the projected outline, it widens around them, and the bottom edge stays below the measured chin,
so that the mask covers the face's own points, not only the model's; where those points are uncertain (calibrated
positions, see ``fbench.perturb.face``), it reaches past them by their spread as well.

``severity`` 1 covers nose bridge to chin; lower severity slides the top edge down (0.5 leaves the nose out,
0 is no mask). Shading follows the surface normal; kinds add their details: surgical pleats and ear loops,
cloth prints and weave, an N95 cup with a valve and head straps, a KN95 fold seam and welded edges.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fbench.perturb.face import FaceFrame
from fbench.perturb.keys import uniform
from fbench.perturb.landmarks import EYE_Z, MODEL
from fbench.perturb.occlusion import Layer, LayeredPerturbation
from fbench.perturb.params import parse_colour
from fbench.perturb.raster import (
    bump,
    col,
    coverage,
    sdf_capsule,
    sdf_ellipse,
    sdf_polygon,
    smoothstep,
    value_noise,
    wave,
)
from fbench.registry import register_perturbation

KINDS = ("surgical", "cloth", "n95", "kn95")
# Outline per kind (model units): top edge v = top + a * f(X) (f = X^2, or |X| for a "vee"), side half-width,
# bottom edge v = bottom - b * g(X).
SHAPES: dict[str, dict[str, Any]] = {
    "surgical": {"a": 0.22, "top": "quad", "width": 0.76, "bottom": 1.08, "b": 0.42, "bottom_shape": "quad"},
    "cloth": {"a": 0.42, "top": "quad", "width": 0.72, "bottom": 1.09, "b": 0.55, "bottom_shape": "quad"},
    "n95": {"a": 0.85, "top": "quad", "width": 0.64, "bottom": 1.06, "b": 0.80, "bottom_shape": "quad"},
    "kn95": {"a": 0.40, "top": "vee", "width": 0.70, "bottom": 1.12, "b": 0.46, "bottom_shape": "vee"},
}
BRIDGE_V = 0.40 * MODEL[2][1]  # 40 % of the way from the eye line (v = 0) down to the nose tip
SURFACE_Z, SURFACE_CURVE = 0.46, 1.2    # the mask surface: Z = SURFACE_Z - SURFACE_CURVE * X^2 + tent
TENT = 0.20                             # how far the mask stands off the face at the nose tip
EAR = (0.93, 0.30, -0.55)               # ear position (|X|, Y, Z) where the loops end
ROWS, SAMPLES = 18, 25
CHIN_WRAP = 0.12    # the bottom edge reaches at least this far below the measured chin (model units)
COVERED = (2, 3, 4, 5)  # the landmarks the mask covers (nose tip, mouth corners, chin) ...
POINT_PAD = 0.07    # ... reaching at least this far past each of them, on either side,
POINT_REACH = 0.18  # ... in the rows within this distance of it, tapering to nothing
_MASK, _COLOUR, _PATTERN = 201, 202, 203

PALETTES: dict[str, tuple[tuple[float, tuple[float, float, float]], ...]] = {
    # (cumulative probability, colour)
    "surgical": ((0.60, (0.58, 0.76, 0.90)), (0.85, (0.94, 0.95, 0.96)), (1.0, (0.56, 0.79, 0.70))),
    "n95": ((0.85, (0.93, 0.93, 0.89)), (1.0, (0.82, 0.84, 0.86))),
    "kn95": ((0.60, (0.95, 0.95, 0.95)), (0.85, (0.62, 0.63, 0.65)), (1.0, (0.14, 0.14, 0.16))),
}


def _tent(v: torch.Tensor) -> torch.Tensor:
    """How far the mask stands off the face on its centre line: over the nose bridge, the nose tip, then
    straight down towards the chin."""
    up = 0.03 + (TENT - 0.03) * torch.clamp((v - 0.10) / 0.30, 0.0, 1.0)
    down = TENT * torch.clamp((1.05 - v) / 0.65, 0.0, 1.0)
    return torch.where(v < 0.40, up, down)


def _tent_width(v: torch.Tensor) -> torch.Tensor:
    return 0.12 + 0.22 * torch.clamp((v - 0.40) / 0.35, 0.0, 1.0)


def _surface_z(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    q = x / _tent_width(v)
    return SURFACE_Z - SURFACE_CURVE * x * x + _tent(v) / (1.0 + q * q)


def _edge_offset(x: torch.Tensor, coefficient: torch.Tensor | float, shape: str) -> torch.Tensor:
    return coefficient * (x.abs() if shape == "vee" else x * x)


def _inverse_edge(dv: torch.Tensor, coefficient: torch.Tensor | float, shape: str) -> torch.Tensor:
    dv = torch.clamp(dv, min=0.0)
    return dv / coefficient if shape == "vee" else torch.sqrt(dv / coefficient)


class _Geometry:
    """The fitted mask of one batch: outline polygon, per-pixel surface estimate and anchor points."""

    def __init__(self, frame: FaceFrame, kind: str, severity: float, r: torch.Tensor):
        shape = SHAPES[kind]
        self.frame, self.kind, self.shape = frame, kind, shape
        device = frame.scale.device
        self.width = shape["width"] * (0.94 + 0.12 * r[:, 0])
        chin = frame.points[:, 5, 1] + frame.spread[:, 5, 1]
        self.bottom = torch.maximum(shape["bottom"] + 0.04 * (r[:, 1] - 0.4), chin + CHIN_WRAP)
        bridge = BRIDGE_V + 0.04 * (r[:, 2] - 0.5)
        self.top = self.bottom - severity * (self.bottom - bridge)
        self.a, self.b = shape["a"], shape["b"]
        # Rows from the top point to the bottom point, denser near both ends.
        t = torch.linspace(0.0, 1.0, ROWS, device=device)
        t = t * t * (3.0 - 2.0 * t)
        rows_v = self.top[:, None] + (self.bottom - self.top)[:, None] * t[None, :]  # (N, K)
        half = torch.minimum(self.width[:, None].expand_as(rows_v),
                             torch.minimum(_inverse_edge(rows_v - self.top[:, None], self.a, shape["top"]),
                                           _inverse_edge(self.bottom[:, None] - rows_v, self.b,
                                                         shape["bottom_shape"])))
        s = torch.linspace(-1.0, 1.0, SAMPLES, device=device)
        xs = half[:, :, None] * s[None, None, :]                                       # (N, K, M)
        vs = rows_v[:, :, None].expand_as(xs)
        us, _ = frame.project(xs, vs, _surface_z(xs, vs))
        left, right = us.amin(dim=2), us.amax(dim=2)                                   # (N, K)
        # Around the measured points (in the rows the mask covers at this severity): at least POINT_PAD past them,
        # and past their spread (uncertain points: anywhere within it).
        for point in COVERED:
            pu, pv = frame.points[:, point, 0, None], frame.points[:, point, 1, None]
            su, sv = frame.spread[:, point, 0, None], frame.spread[:, point, 1, None]
            near = torch.clamp(1.0 - torch.clamp((rows_v - pv).abs() - sv, min=0.0) / POINT_REACH, 0.0, 1.0)
            left = left + near * torch.clamp(pu - su - POINT_PAD - left, max=0.0)
            right = right + near * torch.clamp(pu + su + POINT_PAD - right, min=0.0)
        outline_u = torch.cat([left, right.flip(1)], dim=1)
        outline_v = torch.cat([rows_v, rows_v.flip(1)], dim=1)
        self.outline = torch.stack([outline_u, outline_v], dim=-1)                     # (N, 2K, 2)
        self.rows_v, self.half = rows_v, half

    def edges_at(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top and bottom edge v at surface position X (per pixel)."""
        top = col(self.top) + _edge_offset(x, self.a, self.shape["top"])
        bottom = col(self.bottom) - _edge_offset(x, self.b, self.shape["bottom_shape"])
        return top, torch.maximum(bottom, top + 1e-3)

    def surface_x(self, u: torch.Tensor) -> torch.Tensor:
        """The surface X under frame abscissa u (the visible root of u = X cos + (Z(X) - Z_eye) sin, with the
        tent left out), clamped to the mask's width."""
        c, s = col(self.frame.cos_yaw), col(self.frame.sin_yaw)
        qa = -SURFACE_CURVE * s
        qc = (SURFACE_Z - EYE_Z) * s - u
        disc = torch.sqrt(torch.clamp(c * c - 4.0 * qa * qc, min=0.0))
        x = -2.0 * qc / torch.clamp(c + disc, min=1e-6)
        w = col(self.width)
        return torch.clamp(x, -w, w)

    def facing(self, x: torch.Tensor) -> torch.Tensor:
        """How much the surface at X faces the camera (the normal's depth component), in [0, 1]."""
        c, s = col(self.frame.cos_yaw), col(self.frame.sin_yaw)
        slope = 2.0 * SURFACE_CURVE * x
        return torch.clamp((c - slope * s) / torch.sqrt(1.0 + slope * slope), 0.0, 1.0)

    def point(self, x: torch.Tensor, v: torch.Tensor, z: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame coordinates of per-sample surface points (N,)."""
        z = _surface_z(x, v) if z is None else z
        return self.frame.project(x, v, z)


def _at_least(value: float, minimum: torch.Tensor) -> torch.Tensor:
    """max(value, minimum) for a per-sample tensor ``minimum`` (e.g. a width of at least a few pixels)."""
    return torch.clamp(minimum, min=value)


def _palette(kind: str, r: torch.Tensor, colour: Any) -> torch.Tensor:
    """(N, 3) base colours: the given colour, or the kind's palette drawn per sample, slightly jittered."""
    n, device = r.shape[0], r.device
    if colour is not None:
        return torch.tensor(parse_colour(colour), device=device).expand(n, 3).clone()
    if kind == "cloth":
        choice = r[:, 0:1]
        random = torch.stack([r[:, 1], r[:, 2], r[:, 3]], dim=1) * 0.75 + 0.12
        black = torch.tensor([0.12, 0.12, 0.14], device=device).expand(n, 3)
        navy = torch.tensor([0.12, 0.16, 0.34], device=device).expand(n, 3)
        return torch.where(choice < 0.15, black, torch.where(choice < 0.25, navy, random))
    out = torch.zeros(n, 3, device=device)
    chosen = torch.zeros(n, 1, dtype=torch.bool, device=device)
    for probability, rgb in PALETTES[kind]:
        take = (r[:, 0:1] < probability) & ~chosen
        out = torch.where(take, torch.tensor(rgb, device=device).expand(n, 3), out)
        chosen = chosen | take
    jitter = (torch.stack([r[:, 1], r[:, 2], r[:, 3]], dim=1) - 0.5) * 0.04
    return torch.clamp(out + jitter, 0.0, 1.0)


def _strings(geometry: _Geometry, u: torch.Tensor, v: torch.Tensor, thickness: float, colour: torch.Tensor,
             straps: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Ear loops (two strings from the mask corners to each ear) or N95 head straps, on the visible sides."""
    frame = geometry.frame
    layers = []
    sin = frame.sin_yaw
    alpha_total = torch.zeros_like(u)
    for side in (-1.0, 1.0):
        visible = torch.clamp((0.45 - side * sin) / 0.25, 0.0, 1.0)
        x_edge = side * geometry.width * 0.985
        top, bottom = geometry.edges_at(col(x_edge))
        top, bottom = top.reshape(-1), bottom.reshape(-1)
        if straps:
            anchors = (top + 0.30 * (bottom - top), top + 0.80 * (bottom - top))
            ends = ((0.90, -0.15, -0.40), (0.90, 0.95, -0.45))
        else:
            anchors = (top + 0.04 * (bottom - top), top + 0.96 * (bottom - top))
            ends = (EAR, EAR)
        for anchor_v, (ex, ey, ez) in zip(anchors, ends):
            au, av = geometry.point(x_edge, anchor_v)
            eu, ev = frame.project(side * torch.full_like(sin, ex), torch.full_like(sin, ey),
                                   torch.full_like(sin, ez))
            sdf = sdf_capsule(u, v, col(au), col(av), col(eu), col(ev), thickness)
            alpha = coverage(sdf * col(frame.scale), 1.0) * col(visible)
            alpha_total = torch.maximum(alpha_total, alpha)
    layers.append((alpha_total, colour))
    return layers


def _render(frame: FaceFrame, keys: torch.Tensor, kind: str, severity: float, colour_param: Any
            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    r = uniform(keys, _MASK, 8)
    geometry = _Geometry(frame, kind, severity, r)
    u, v = frame.grid()
    scale = col(frame.scale)
    pixel = 1.0 / scale  # one pixel in frame units
    sdf = sdf_polygon(u, v, geometry.outline)
    alpha = coverage(sdf * scale, 1.3)
    x = geometry.surface_x(u)
    top, bottom = geometry.edges_at(x)
    t = (v - top) / (bottom - top)                  # 0 at the top edge, 1 at the bottom edge
    height_px = (bottom - top) * scale
    base = _palette(kind, uniform(keys, _COLOUR, 4), colour_param)
    # Light: Lambert on the curved surface, darker where it turns under the chin, a darker rim.
    light = 0.60 + 0.40 * geometry.facing(x)
    light = light * (1.0 - 0.22 * smoothstep(0.72, 1.0, t))
    light = light * (1.0 - 0.10 * torch.clamp(1.0 + sdf / _at_least(0.035, 1.5 * pixel), 0, 1))
    ridge_u, _ = frame.project(torch.zeros_like(v), v, SURFACE_Z + _tent(v))
    ridge = bump((u - ridge_u) / 0.09) * (1.0 - smoothstep(0.35, 0.75, v))
    colour = base[:, :, None, None].expand(-1, -1, u.shape[1], u.shape[2])
    detail = torch.zeros_like(u)                    # additive brightness changes
    string_colour = torch.clamp(base * 0.5 + 0.5 * torch.tensor([0.97, 0.97, 0.97], device=u.device), 0, 1)
    string_thickness = 0.010
    straps = False
    rp = uniform(keys, _PATTERN, 12)
    if kind == "surgical":
        light = light + 0.06 * ridge
        for centre in (0.30, 0.50, 0.70):
            d = (t - centre) * height_px            # pixels from the fold, down positive
            detail = detail - 0.20 * bump((d - 0.6) / 1.4) + 0.08 * bump((d + 1.4) / 1.6)
        binding = torch.maximum(1.0 - smoothstep(0.03, 0.07, t), smoothstep(0.93, 0.97, t))
        detail = detail + 0.05 * binding
        string_colour = torch.clamp(base * 0.3 + 0.7 * torch.tensor([0.97, 0.97, 0.97], device=u.device), 0, 1)
    elif kind == "cloth":
        light = light + 0.04 * ridge
        period = _at_least(0.035, 2.5 * pixel)
        weave = 0.5 * wave(x / period) + 0.5 * wave(v / period)
        detail = detail + 0.08 * (weave - 0.5)
        second = torch.stack([rp[:, 0], rp[:, 1], rp[:, 2]], dim=1) * 0.8 + 0.1
        pattern = torch.floor(rp[:, 3] * 4).reshape(-1, 1, 1)
        sc, ss = rp[:, 4] * 1.4 - 0.7, torch.ones_like(rp[:, 4])
        norm = torch.sqrt(sc * sc + ss * ss)
        stripe_coord = (x * col(sc / norm) + v * col(ss / norm)) / 0.14
        stripes = smoothstep(0.55, 0.65, wave(stripe_coord))
        cell = 0.16
        fx, fy = x / cell + col(rp[:, 5]), v / cell + col(rp[:, 6])
        dx, dy = fx - torch.floor(fx) - 0.5, fy - torch.floor(fy) - 0.5
        dots = 1.0 - smoothstep(0.22, 0.28, torch.sqrt(dx * dx + dy * dy))
        plaid = torch.maximum(smoothstep(0.7, 0.8, wave(x / 0.2)), smoothstep(0.7, 0.8, wave(v / 0.2))) * 0.7
        amount = torch.where(pattern < 1, torch.zeros_like(u), torch.where(pattern < 2, stripes,
                             torch.where(pattern < 3, dots, plaid)))
        colour = colour * (1.0 - amount[:, None]) + second[:, :, None, None] * amount[:, None]
        seam = bump((u - ridge_u) / (1.0 * pixel)) * col((rp[:, 7] < 0.5).to(u.dtype))
        detail = detail - 0.18 * seam
        string_colour = base
        string_thickness = 0.016
    elif kind == "n95":
        light = light + 0.05 * ridge
        fibres = value_noise(keys, _PATTERN * 4, u / torch.clamp(3.0 * pixel, min=0.02),
                             v / torch.clamp(3.0 * pixel, min=0.02), cells=48, octaves=1)
        detail = detail + 0.05 * (fibres - 0.5)
        rim = torch.clamp(1.0 - (-sdf) / _at_least(0.05, 2.5 * pixel), 0.0, 1.0)
        detail = detail - 0.06 * rim
        # The valve, on the side nearer the camera (random on a frontal face).
        side = torch.where(frame.sin_yaw.abs() > 0.15, -torch.sign(frame.sin_yaw),
                           torch.where(rp[:, 8] < 0.5, -1.0, 1.0))
        vx, vv = 0.30 * side, torch.full_like(side, 0.66)
        vu, vvv = geometry.point(vx, vv)
        facing = geometry.facing(col(vx)).reshape(-1)
        radius = 0.12
        valve = sdf_ellipse(u, v, col(vu), col(vvv), col(radius * torch.clamp(facing, min=0.2)),
                            torch.full_like(col(vu), radius))
        valve_alpha = coverage(valve * scale, 1.0) * col((facing > 0.15).to(u.dtype))
        valve_colours = torch.tensor([[0.55, 0.57, 0.60], [0.92, 0.92, 0.92], [0.90, 0.55, 0.20],
                                      [0.25, 0.40, 0.70]], device=u.device)
        valve_colour = valve_colours[torch.clamp(torch.floor(rp[:, 9] * 4).long(), max=3)]
        dv = (v - col(vvv)) / radius
        slits = bump((wave(dv * 2.5 + 0.5) - 1.0) / 0.25) * (valve < -0.35 * radius)
        ring = bump((valve + 0.02) / 0.02)
        valve_shade = (1.0 - 0.35 * slits - 0.25 * ring)[:, None]
        colour = (colour * (1 - valve_alpha[:, None])
                  + valve_colour[:, :, None, None] * valve_shade * valve_alpha[:, None])
        straps = True
        string_thickness = 0.022
        strap_palette = torch.tensor([[0.95, 0.85, 0.30], [0.92, 0.92, 0.92], [0.30, 0.45, 0.80]], device=u.device)
        string_colour = strap_palette[torch.clamp(torch.floor(rp[:, 10] * 3).long(), max=2)]
    elif kind == "kn95":
        # A vertical fold seam down the middle, a panel lit differently on each side, welded edge lines.
        seam_distance = (u - ridge_u) / pixel
        detail = detail - 0.30 * bump(seam_distance / 1.3) + 0.08 * bump((seam_distance - 2.0) / 1.5)
        detail = detail + 0.04 * torch.where(u > ridge_u, 1.0, -1.0) * col(torch.where(frame.sin_yaw > 0, -1.0, 1.0))
        inset = _at_least(0.045, 3.0 * pixel)
        weld = bump((sdf + inset) / torch.clamp(0.4 * inset, min=0.8 * pixel))
        dotted = 0.5 + 0.5 * wave((u + v) / _at_least(0.03, 2.5 * pixel))
        detail = detail - 0.10 * weld * dotted
        string_colour = torch.clamp(base * 0.2 + 0.8 * torch.tensor([0.96, 0.96, 0.96], device=u.device), 0, 1)
    shaded = torch.clamp(colour * light[:, None] + detail[:, None], 0.0, 1.0)
    layers = _strings(geometry, u, v, string_thickness, string_colour, straps)
    layers.append((alpha, shaded))
    return layers


@register_perturbation("mask")
class FaceMask(LayeredPerturbation):
    name: ClassVar[str] = "mask"
    description: ClassVar[str] = ("a face mask fitted to the landmarks (MaskTheFace-like): surgical, cloth, n95 "
                                  "or kn95; severity 1 covers nose bridge to chin, lower slides it down")
    parameters: ClassVar[dict[str, tuple[type, Any, tuple[Any, ...] | None]]] = {
        "kind": (str, "surgical", KINDS),
        "severity": (float, 1.0, None),
        "color": (str, None, None),
    }

    def layers(self, frame: FaceFrame, keys: torch.Tensor, params: dict[str, Any]) -> list[Layer]:
        return _render(frame, keys, params["kind"], float(params["severity"]), params["color"])
