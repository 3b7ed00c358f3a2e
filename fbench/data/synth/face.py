"""Procedural 3-D heads for the synthetic KDEF-like set (``fbench.data.synth.build``).

A head is a lofted surface in millimetres: horizontal superellipse sections whose width, front and back extents
follow smooth profiles from the crown to the chin, plus relief for the brow ridge, eye sockets and eyeballs, nose,
cheekbones, lips, chin and ears, and a hair layer of some volume. Head frame: x to the subject's left (image right
in a frontal view), y up, z out of the face; the origin lies between the ears.

Expressions are facial action units (AUs), each a displacement field over the rest surface (a blendshape): brows
rise, fall and draw together, cheeks lift, the nose wrinkles, lip corners pull, drop and stretch, lips tighten,
the lower lip and the jaw drop. The mouth is a slit in the mesh that opens onto teeth and a dark cavity. Eyelids are
curves evaluated per pixel in rest coordinates, so lid raising and tightening (AU5, AU6, AU7) move them too.

Everything here is a pure function of its parameters; randomness enters only through the generators passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from fbench.data.synth.raster import grid_normals, grid_triangles, rasterize

# Action units with a geometric field; AU5 and AU7 act on the eyelid curves only (AU6 on both).
AU_NAMES = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU12", "AU15", "AU16", "AU20", "AU23", "AU26")
# Overall strength of the action units (1 = the amplitudes written below, in mm at intensity 1).
AU_GAIN = 2.2
GEOMETRIC_AUS = ("AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU15", "AU16", "AU20", "AU23", "AU26")

LANDMARK_NAMES = ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r", "chin")

_SKIN_LIGHT = np.array([0.95, 0.80, 0.70])
_SKIN_DARK = np.array([0.33, 0.21, 0.15])
_HAIR_COLOURS = {
    "black": (0.05, 0.045, 0.045), "dark_brown": (0.14, 0.095, 0.07), "brown": (0.30, 0.20, 0.13),
    "light_brown": (0.48, 0.36, 0.24), "blond": (0.78, 0.64, 0.40), "red": (0.52, 0.24, 0.11),
    "grey": (0.58, 0.57, 0.55),
}
_EYE_COLOURS = ((0.30, 0.17, 0.09), (0.17, 0.10, 0.06), (0.42, 0.33, 0.16), (0.28, 0.40, 0.27),
                (0.30, 0.45, 0.66), (0.45, 0.50, 0.55))
_SHIRT_COLOURS = ((0.45, 0.46, 0.48), (0.30, 0.32, 0.36), (0.55, 0.55, 0.52), (0.25, 0.28, 0.35),
                  (0.50, 0.48, 0.44), (0.36, 0.36, 0.36))


# ----------------------------------------------------------------------------------------------- small helpers
def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((x - cx) / sx) ** 2) - ((y - cy) / sy) ** 2)


def _pair(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """A Gaussian bump mirrored on both sides of the face (centred at +-cx)."""
    return np.exp(-(((np.abs(x) - cx) / sx) ** 2) - ((y - cy) / sy) ** 2)


def _lattice_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Smooth noise of unit spread on a texel lattice: random values ``cells`` texels apart, upsampled."""
    import cv2

    cells = max(1.0, float(cells))
    h, w = shape
    gh, gw = int(h / cells) + 3, int(w / cells) + 3
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    fine = cv2.resize(coarse, (int(math.ceil(gw * cells)), int(math.ceil(gh * cells))), interpolation=cv2.INTER_CUBIC)
    fine = fine[:h, :w].astype(np.float64)
    return (fine - fine.mean()) / max(float(fine.std()), 1e-6)


def _pchip(xs: list[float], ys: list[float]) -> PchipInterpolator:
    order = np.argsort(xs)
    return PchipInterpolator(np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order],
                             extrapolate=True)


# ------------------------------------------------------------------------------------------- identity sampling
def sample_identity_params(seed: int, subject: int, sex: str) -> dict[str, Any]:
    """Shape and appearance of one synthetic person (deterministic from ``seed`` and ``subject``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D, subject]))
    f = sex == "F"
    n = rng.normal
    u = rng.uniform
    p: dict[str, Any] = {"sex": sex}
    p["head_w"] = n(73.0 if f else 77.0, 2.5)
    p["head_top"] = n(124.0 if f else 128.0, 4.0)
    p["head_front"] = n(93.0, 2.0)
    p["head_back"] = n(98.0 if f else 102.0, 4.0)
    p["cheek_w"] = p["head_w"] * u(0.86, 0.93)
    p["jaw_w"] = n(45.0 if f else 51.0, 3.0)
    p["chin_w"] = n(11.0 if f else 14.0, 2.0)
    p["chin_y"] = n(-97.0 if f else -103.0, 4.0)
    p["chin_z"] = n(0.0, 3.0)
    p["boxy"] = u(1.9, 2.3)
    p["eye_x"] = n(31.5, 1.8)
    p["eye_y"] = n(12.0, 2.0)
    p["eye_hw"] = n(14.0, 0.9)
    p["eye_hu"] = n(4.5, 0.45)
    p["eye_hl"] = n(4.4, 0.45)
    p["eye_tilt"] = n(1.0, 1.1)
    p["iris_r"] = n(5.9, 0.25)
    p["crease"] = u(2.5, 6.0)
    p["socket"] = n(8.0, 1.2)
    p["eye_colour"] = tuple(np.asarray(_EYE_COLOURS[rng.choice(len(_EYE_COLOURS), p=[.3, .25, .12, .1, .15, .08])])
                            * u(0.85, 1.15))
    p["brow_y"] = n(17.0, 1.8)
    p["brow_arch"] = n(4.5 if f else 2.8, 1.2)
    p["brow_thick"] = n(4.0 if f else 5.6, 0.7)
    p["brow_in"] = n(12.5, 1.5)
    p["brow_out"] = n(51.0, 2.5)
    p["brow_dark"] = u(0.65, 0.95) if f else u(0.75, 1.0)
    p["nose_tip_y"] = n(-26.0, 3.5)
    p["nose_h"] = n(19.0 if f else 22.0, 2.5)
    p["nose_w"] = n(16.0 if f else 18.0, 1.5)
    p["nose_bridge"] = n(7.0, 1.0)
    p["nose_hump"] = n(0.0, 1.2)
    p["mouth_y"] = p["nose_tip_y"] - 7.5 - float(np.clip(n(19.0, 2.0), 15.0, 23.0))  # subnasale to stomion
    p["mouth_w"] = n(23.5, 1.7)
    p["lip_u"] = max(3.0, n(6.5 if f else 5.5, 1.0))
    p["lip_l"] = max(4.0, n(8.5 if f else 7.5, 1.2))
    p["lip_z"] = n(5.0, 1.0)
    p["cheekbone"] = n(4.0, 1.2)
    p["ear_y"] = n(4.0, 3.0)
    p["ear_size"] = n(30.0 if f else 32.0, 2.0)
    p["ear_out"] = n(15.0, 3.0)
    p["shoulders"] = n(172.0 if f else 195.0, 8.0)
    # Skin: mostly lighter tones, a fair share of darker ones.
    tone = float(np.clip(rng.beta(1.4, 2.6), 0.0, 1.0))
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone
    skin = skin * np.array([1.0, u(0.96, 1.04), u(0.93, 1.07)]) * u(0.95, 1.05)
    p["skin"] = tuple(np.clip(skin, 0.05, 1.0))
    p["skin_tone"] = tone
    p["blush"] = u(0.0, 0.12) + (0.05 if f else 0.0)
    p["lip_colour"] = tuple(np.clip(skin * np.array([0.86, 0.62, 0.62]) * u(0.8, 0.95) + (0.03 if f else 0.0), 0, 1))
    # Hair.
    if tone > 0.45:
        names, probs = ["black", "dark_brown", "brown"], [0.6, 0.3, 0.1]
    else:
        names = ["black", "dark_brown", "brown", "light_brown", "blond", "red", "grey"]
        probs = [0.12, 0.25, 0.22, 0.14, 0.15, 0.05, 0.07]
    hair = names[rng.choice(len(names), p=probs)]
    p["hair_name"] = hair
    p["hair"] = tuple(np.clip(np.asarray(_HAIR_COLOURS[hair]) * u(0.85, 1.15), 0, 1))
    bald = (not f) and u() < 0.1
    bangs = f and u() < 0.35
    p["bald"] = bald
    p["hair_front"] = (n(70.0, 6.0) if f else n(76.0, 7.0)) if not bangs else p["eye_y"] + p["brow_y"] + u(10, 22)
    p["hair_temple"] = p["hair_front"] - u(0, 8) if f or bangs else p["hair_front"] + u(-6, 10)
    p["hair_side"] = n(12.0, 5.0) if f else n(-2.0, 6.0)
    p["hair_nape"] = n(-45.0, 6.0)
    p["hair_vol"] = n(13.0, 5.0) if f else max(2.0, n(7.0, 4.0))
    p["hair_long"] = (f and u() < 0.7) or ((not f) and u() < 0.06)
    p["hair_len"] = u(-240, -130)
    p["hair_cover_ears"] = p["hair_long"] and u() < 0.6
    p["beard"] = (not f) and u() < 0.3
    p["beard_density"] = u(0.25, 0.8)
    p["stubble"] = (not f) and u() < 0.5
    # Resting expression biases: the same geometry a little raised, dropped or narrowed for this face.
    bias = {au: 0.0 for au in AU_NAMES}
    for au, spread in (("AU1", 0.15), ("AU2", 0.12), ("AU4", 0.15), ("AU5", 0.15), ("AU7", 0.15),
                       ("AU12", 0.15), ("AU15", 0.15), ("AU23", 0.1), ("AU6", 0.1)):
        bias[au] = float(np.clip(n(0.0, spread), -2 * spread, 2 * spread))
    p["bias"] = tuple(bias[au] for au in AU_NAMES)
    p["expressive"] = u(0.8, 1.2)
    p["noise_seed"] = int(rng.integers(2 ** 31))
    return p


def session_params(base: dict[str, Any], seed: int, subject: int, session: int) -> dict[str, Any]:
    """The same person on another day: hair a little different, another shirt."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E, subject, session]))
    p = dict(base)
    p["hair_vol"] = max(1.0, base["hair_vol"] * rng.uniform(0.8, 1.2))
    p["hair_front"] = base["hair_front"] + rng.normal(0.0, 1.5)
    p["hair"] = tuple(np.clip(np.asarray(base["hair"]) * rng.uniform(0.92, 1.08), 0, 1))
    p["shirt"] = tuple(np.asarray(_SHIRT_COLOURS[rng.integers(len(_SHIRT_COLOURS))]) * rng.uniform(0.85, 1.15))
    p["session_seed"] = int(rng.integers(2 ** 31))
    return p


# ------------------------------------------------------------------------------------------------ head shape
class _Shape:
    """The lofted base head: for each height y a superellipse section of half-width W, front extent F and back
    extent B about the centre depth Zc."""

    def __init__(self, p: dict[str, Any]):
        top, chin = p["head_top"], p["chin_y"]
        self.top, self.bot = top, chin - 1.5
        bot = self.bot
        self.n = p["boxy"]
        fr, cz = p["head_front"], p["chin_z"]
        # Front and back of the base surface along the midline (relief comes on top), then the section centre.
        zf = _pchip([bot, bot + 6.0, -80.0, -52.0, -20.0, 0.0, 30.0, top],
                    [60.0 + cz, 79.0 + cz, 85.0 + cz, fr - 5.0, fr - 5.0, fr - 5.0, fr, fr])
        back = p["head_back"]
        zb = _pchip([bot, -85.0, -65.0, -48.0, -30.0, 0.0, 30.0, top],
                    [52.0, 26.0, -4.0, -45.0, -back + 18.0, -back + 3.0, -back, -back])
        ys = np.linspace(bot, top, 400)
        front, rear = zf(ys), zb(ys)
        self.zc = _pchip(list(ys), list(0.5 * (front + rear)))
        self.f = _pchip(list(ys), list(0.5 * (front - rear)))
        self.w = _pchip([bot, bot + 8, -66.0, -30.0, -5.0, 25.0, top],
                        [p["chin_w"], p["chin_w"] + 12.0, p["jaw_w"], p["cheek_w"] - 3.0, p["cheek_w"], p["head_w"],
                         p["head_w"]])
        self.cap_top = 28.0

    def _cap(self, y: np.ndarray, start_bottom: float) -> np.ndarray:
        top = np.sqrt(np.clip(1 - ((y - self.cap_top) / (self.top - self.cap_top)) ** 2, 0, 1))
        bottom = np.sqrt(np.clip(1 - ((y - start_bottom) / (self.bot - start_bottom)) ** 2, 0, 1))
        return np.where(y > self.cap_top, top, np.where(y < start_bottom, bottom, 1.0))

    def section(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        yc = np.clip(y, self.bot, self.top)
        w = self.w(yc) * self._cap(yc, self.bot + 9.0)
        f = self.f(yc) * self._cap(yc, self.bot + 9.0)
        return w, f, f, self.zc(yc)

    def surface(self, phi: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x and z of the base surface at azimuth ``phi`` (0 = front, +pi/2 = subject's left) and height ``y``."""
        w, f, b, zc = self.section(y)
        e = 2.0 / self.n
        s, c = np.sin(phi), np.cos(phi)
        x = w * np.sign(s) * np.abs(s) ** e
        z = zc + np.where(c >= 0, f, b) * np.sign(c) * np.abs(c) ** e
        return x, z

    def front_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z of the base surface's front half at (x, y)."""
        w, f, _, zc = self.section(y)
        t = np.clip(np.abs(x) / np.maximum(w, 1e-6), 0, 1)
        return zc + f * (1 - t ** self.n) ** (1 / self.n)


@dataclass
class _Layout:
    """Where the facial features sit on this head (rest frame, mm)."""

    ex: float
    ey: float
    by: float  # brow line
    nose_tip: float
    nose_base: float
    nasion: float
    my: float  # mouth line
    mx: float  # mouth half-width
    chin: float

    @classmethod
    def of(cls, p: dict[str, Any]) -> _Layout:
        ey = p["eye_y"]
        tip = p["nose_tip_y"]
        return cls(ex=p["eye_x"], ey=ey, by=ey + p["brow_y"], nose_tip=tip, nose_base=tip - 7.5, nasion=ey + 3.0,
                   my=p["mouth_y"], mx=p["mouth_w"], chin=p["chin_y"])


def _relief(p: dict[str, Any], L: _Layout, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Forward (z) relief of the face over the base surface, mm."""
    ax = np.abs(x)
    dz = np.zeros_like(x)
    # Brow ridge and glabella.
    dz += 3.5 * np.exp(-(((y - (L.by - 3.0)) / 7.0) ** 2)) * np.exp(-((x / 46.0) ** 4))
    # Eye sockets and eyeballs.
    dz -= p["socket"] * np.exp(-(((ax - L.ex) / 17.0) ** 2) - ((y - L.ey - 1.0) / 11.0) ** 2) ** 1.3
    r2 = ((ax - L.ex) ** 2 + (y - L.ey) ** 2) / 11.5 ** 2
    dz += (p["socket"] + 0.5) * np.sqrt(np.clip(1 - r2, 0, 1)) ** 1.4
    # Nose: a ridge from the nasion to the tip, the tip lobule, the alae.
    h = p["nose_h"]
    prof = _pchip([L.nose_base - 4.0, L.nose_base, L.nose_tip - 4.0, L.nose_tip, L.nose_tip + 7.0,
                   0.5 * (L.nasion + L.nose_tip), L.nasion, L.nasion + 9.0],
                  [0.0, 2.5, h - 5.0, h, h - 3.0, 0.55 * h + p["nose_hump"], p["nose_bridge"], 2.0])
    yl = np.clip(y, L.nose_base - 4.0, L.nasion + 9.0)
    ridge = np.where((y > L.nose_base - 4.0) & (y < L.nasion + 9.0), prof(yl), 0.0)
    width = np.interp(y, [L.nose_base - 4, L.nose_tip - 2, L.nose_tip + 6, L.nasion], [9.0, 11.0, 8.5, 5.5])
    t = np.clip(ax / width, 0, 1)
    dz += ridge * (1 - t ** 2) ** 1.6
    ala = p["nose_w"] - 5.5
    dz += 8.0 * np.clip(1 - ((ax - ala) / 6.5) ** 2 - ((y - L.nose_tip + 3.0) / 5.5) ** 2, 0, 1) ** 0.8
    # Cheekbones and cheeks.
    dz += p["cheekbone"] * _pair(x, y, 45.0, L.ey - 16.0, 14.0, 12.0)
    dz += 2.0 * _pair(x, y, L.mx + 14.0, L.my + 10.0, 13.0, 13.0)
    # Lips: upper (skin and vermilion) and lower, the mentolabial sulcus and the chin.
    lat = np.clip(1 - (x / (L.mx + 6.0)) ** 2, 0, 1)
    up = np.interp(y, [L.my, L.my + p["lip_u"] * 0.5, L.my + p["lip_u"], L.nose_base - 2.0, L.nose_base],
                   [p["lip_z"] - 1.0, p["lip_z"] + 0.6, p["lip_z"], 2.5, 1.5])
    low = np.interp(y, [L.my - p["lip_l"] - 5.0, L.my - p["lip_l"], L.my - 0.5 * p["lip_l"], L.my],
                    [0.0, 2.5, p["lip_z"] + 0.2, p["lip_z"] - 1.0])
    lips = np.where(y >= L.my, np.where(y <= L.nose_base, up, 0.0), np.where(y >= L.my - p["lip_l"] - 5.0, low, 0))
    dz += lips * lat ** 0.8
    dz += (4.0 + p["chin_z"] * 0.3) * np.exp(-((x / 15.0) ** 2) - ((y - (L.chin + 13.0)) / 9.0) ** 2)
    return dz


def _ears(p: dict[str, Any], y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Outward (|x|) relief of the ears, mm."""
    ye, ze = p["ear_y"], -2.0
    hy, hz = p["ear_size"], 15.0
    rho = ((y - ye) / hy) ** 2 + ((z - ze) / hz) ** 2
    flap = np.clip(1 - rho, 0, 1) ** 0.35
    out = p["ear_out"] * flap * (0.45 + 0.55 * np.clip((ze + hz - z) / (2 * hz), 0, 1))
    out -= 6.0 * np.exp(-((y - ye + 4) / 9.0) ** 2 - ((z - ze - 2.0) / 6.0) ** 2) * (rho < 1)
    return np.maximum(out, 0.0)


def _hairline(p: dict[str, Any], L: _Layout, alpha: np.ndarray) -> np.ndarray:
    """Height of the hairline at azimuth ``alpha`` (radians from the front, either side)."""
    a = np.abs(alpha)
    ear_top = p["ear_y"] + p["ear_size"] + 3.0
    front = 200.0 if p["bald"] else p["hair_front"]
    temple = 200.0 if p["bald"] else p["hair_temple"]
    side = p["hair_side"]
    pts_a = [0.0, 0.45, 0.95, 1.22, 1.33, 1.42, 1.50, 1.85, 2.3, math.pi]
    pts_y = [front, front - 2.0, temple, max(side + 25, min(temple, 50.0)), side, side, ear_top, ear_top,
             p["hair_nape"] + 20.0, p["hair_nape"]]
    if p["bald"]:
        pts_y[:3] = [200.0, 200.0, 110.0]
    return _pchip(pts_a, pts_y)(a)


# ------------------------------------------------------------------------------------------------------ meshes
@dataclass
class _Mesh:
    name: str
    rest: np.ndarray  # (R, C, 3)
    wrap: bool = False
    skip: np.ndarray | None = None
    fields: dict[str, np.ndarray] | None = None  # AU -> (R, C, 3) displacement at intensity 1
    texels: int = 2  # atlas texels per grid cell
    atlas_row: int = 0


def _density_samples(lo: float, hi: float, weight, step: float, count: int = 4000) -> np.ndarray:
    """Points in [lo, hi] spaced so that ``weight`` (per unit) times spacing is about ``step``."""
    t = np.linspace(lo, hi, count)
    w = weight(t)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(t))])
    n = max(3, int(math.ceil(cum[-1] / step)) + 1)
    return np.interp(np.linspace(0, cum[-1], n), cum, t)


class FaceModel:
    """One person in one session, ready to render: meshes, AU displacement fields and the texture atlas.

    ``spacing`` is the mesh spacing in mm (about two pixels is plenty: textures and normals are per pixel).
    """

    def __init__(self, params: dict[str, Any], spacing: float = 2.4, texel: float = 0.8):
        self.p = p = params
        self.L = _Layout.of(p)
        self.shape = _Shape(p)
        self.spacing = spacing
        self.texel = texel
        meshes = [self._head()]
        if p["hair_long"]:
            meshes.append(self._curtain())
        meshes += [self._neck(), self._torso()] + self._mouth()
        self.meshes = meshes
        self._assemble()
        self._landmarks()
        self._atlas()

    # ------------------------------------------------------------------ geometry
    def _head(self) -> _Mesh:
        """The head: a grid over azimuth and height with a slit between the lips, relief, ears and a hair layer."""
        p, L, shape, step = self.p, self.L, self.shape, self.spacing
        # Rows: equal steps of arc length down the front, side and back profiles, denser at the nose and mouth.
        yf = np.linspace(shape.bot, shape.top, 3000)
        w, f, b, zc = shape.section(yf)
        ds = np.sqrt(np.diff(yf)[:, None] ** 2 + np.diff(np.stack([zc + f, w, zc - b], 1), axis=0) ** 2).max(1)
        dens = np.concatenate([ds, ds[-1:]]) / np.gradient(yf)
        dens = dens * (1 + 0.8 * np.exp(-((yf - L.nose_tip + 3) / 7.0) ** 2) + 1.0 * np.exp(-((yf - L.my) / 9.0) ** 2))
        ys = _density_samples(shape.bot, shape.top, lambda t: np.interp(t, yf, dens), step)[::-1]
        k = int(np.argmin(np.abs(ys - L.my)))
        ys[k] = L.my
        ys = np.concatenate([ys[: k + 1], [L.my], ys[k + 1:]])
        self.mouth_row = k  # rows k and k + 1 are the upper and lower lip edges of the slit
        # Columns: azimuth, denser on the face than at the back.
        def per_radian(a: np.ndarray) -> np.ndarray:
            return 85.0 * (0.55 + 0.45 * _smoothstep(-0.5, -0.1, np.cos(a))) * (1 + 0.5 * np.exp(-(a / 0.3) ** 2))

        phis = _density_samples(-math.pi, math.pi, per_radian, step)
        P, Y = np.meshgrid(phis, ys)
        x, z = shape.surface(P, Y)
        front = _smoothstep(0.15, 0.55, np.cos(P))
        z = z + front * _relief(p, L, x, Y)
        x = x + np.sign(x) * _ears(p, Y, z)
        rest = np.stack([x, Y, z], axis=-1)
        # The hair layer: volume along the outward direction from the head centre.
        alpha = np.arctan2(x, z + 5.0)
        hl = _hairline(p, L, alpha)
        vol = p["hair_vol"] * (0.35 + 0.65 * _smoothstep(0.0, 60.0, Y)) * (0.6 + 0.4 * np.abs(np.cos(alpha)))
        hair = _smoothstep(hl - 1.0, hl + 5.0, Y)
        d = rest - np.array([0.0, 15.0, -5.0])
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        self.head_rest_nohair = rest.copy()
        rest = rest + d * (hair * vol)[..., None]
        cols = len(phis)
        xm = x[k]
        skip = np.zeros((len(ys) - 1, cols - 1), dtype=bool)
        skip[k] = (np.abs(xm[:-1]) < L.mx) & (np.abs(xm[1:]) < L.mx) & (np.cos(phis[:-1]) > 0)
        mesh = _Mesh("head", rest, wrap=True, skip=skip, texels=int(np.clip(round(step / self.texel), 1, 4)))
        lower = np.repeat((np.arange(len(ys)) > k)[:, None], cols, axis=1).astype(float)
        mesh.fields = self._au_fields(self.head_rest_nohair, lower)
        return mesh

    def _au_fields(self, rest: np.ndarray, lower: np.ndarray) -> dict[str, np.ndarray]:
        """Displacement (mm, at intensity 1) of each geometric AU at the rest points; ``lower``: 1 below the slit."""
        L = self.L
        e = self.p["expressive"] * AU_GAIN
        x, y, z = rest[..., 0], rest[..., 1], rest[..., 2]
        fw = _smoothstep(25.0, 60.0, z)  # the face only, not the back of the head
        sx = np.sign(x)
        zero = np.zeros_like(x)
        out: dict[str, np.ndarray] = {}

        def vec(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
            return np.stack([dx * fw * e, dy * fw * e, dz * fw * e], axis=-1)

        g = _pair(x, y, 14.0, L.by + 2.0, 11.0, 10.0)
        out["AU1"] = vec(-0.6 * sx * g, 5.0 * g, zero)
        g = _pair(x, y, 44.0, L.by + 1.0, 12.0, 9.0)
        out["AU2"] = vec(zero, 5.0 * g, zero)
        g = _pair(x, y, 18.0, L.by - 1.0, 14.0, 8.0)
        gx = _pair(x, y, 15.0, L.by - 1.0, 12.0, 9.0)
        out["AU4"] = vec(-3.0 * sx * gx, -4.2 * g, 1.5 * _gauss(x, y, 0.0, L.by - 3.0, 8.0, 8.0))
        g = _pair(x, y, 36.0, L.ey - 17.0, 15.0, 9.0)
        out["AU6"] = vec(zero, 3.5 * g, 2.0 * g)
        g = _pair(x, y, 12.0, L.nose_tip + 3.0, 9.0, 10.0)
        lip_up = _gauss(x, y, 0.0, L.my + 7.0, L.mx, 6.0) * (1 - lower)
        out["AU9"] = vec(zero, 3.0 * g + 1.8 * lip_up - 1.2 * _pair(x, y, 14.0, L.by, 10.0, 7.0),
                         -0.8 * g + 0.8 * _gauss(x, y, 0.0, L.nasion - 3.0, 6.0, 6.0))
        g = _pair(x, y, L.mx, L.my, 11.0, 9.0)
        gc = _pair(x, y, L.mx + 13.0, L.my + 16.0, 15.0, 12.0)
        out["AU12"] = vec(3.6 * sx * g, 4.8 * g + 1.5 * gc, -2.5 * g + 1.5 * gc)
        g = _pair(x, y, L.mx, L.my - 1.0, 10.0, 9.0)
        out["AU15"] = vec(-0.6 * sx * g, -4.5 * g, -0.5 * g)
        lens = np.clip(1 - (x / L.mx) ** 2, 0, 1)
        g = _gauss(x, y, 0.0, L.my - 5.0, 2 * L.mx, 7.0) * lens * lower
        out["AU16"] = vec(zero, -3.5 * g, 1.0 * g)
        g = _pair(x, y, L.mx, L.my, 13.0, 10.0)
        out["AU20"] = vec(5.0 * sx * g, -1.0 * g, -1.2 * g)
        lipzone = _gauss(x, y, 0.0, L.my, L.mx + 5.0, 11.0) * np.clip(1 - (x / (L.mx + 4)) ** 2, 0, 1)
        g = _pair(x, y, L.mx, L.my, 8.0, 8.0)
        out["AU23"] = vec(-2.0 * sx * g, -0.4 * (y - L.my) * lipzone, -1.5 * lipzone)
        # The jaw: everything below the slit drops, the lip edge by the lens-shaped opening, more with distance
        # from the hinge near the ear.
        below = _smoothstep(0.0, 15.0, L.my - y)
        out["AU26"] = self._jaw(lower * (np.sqrt(lens) * (1 - below) + below), z)
        return out

    def _jaw(self, weight: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Jaw-drop displacement (AU26 at intensity 1): down and a little back, growing from the hinge forward."""
        lam = weight * np.clip((z + 5.0) / 90.0, 0.0, 1.0) * self.p["expressive"] * AU_GAIN
        return np.stack([np.zeros_like(lam), -10.0 * lam, -3.0 * lam], axis=-1)

    def _curtain(self) -> _Mesh:
        """Long hair: a sheet from under the hair cap, around the back of the head, down toward the shoulders."""
        p, L, step = self.p, self.L, self.spacing
        a0 = math.radians(80.0 if p["hair_cover_ears"] else 100.0)
        alphas = _density_samples(a0, 2 * math.pi - a0, lambda a: np.full_like(a, 80.0), step * 1.5)
        top = L.ey + 30.0
        ys = _density_samples(p["hair_len"], top, lambda t: np.ones_like(t), step * 1.5)[::-1]
        A, Y = np.meshgrid(alphas, ys)
        grow = _smoothstep(top, top - 60.0, Y) ** 0.7
        rx = self.p["head_w"] + 0.3 * p["hair_vol"] - 4.0 + (18.0 + 0.3 * p["hair_vol"]) * grow
        rz = self.p["head_back"] + 0.3 * p["hair_vol"] - 8.0 + 10.0 * grow
        x = rx * np.sin(A)
        z = -5.0 + rz * np.cos(A) * np.where(np.cos(A) < 0, 1.0, 0.55)
        # Seen from outside, columns must run left to right: azimuth runs the other way round behind the head.
        rest = np.stack([x, Y, z], axis=-1)[:, ::-1]
        return _Mesh("curtain", np.ascontiguousarray(rest))

    def _neck(self) -> _Mesh:
        """The neck: an elliptic tube leaning back as it goes down, deeper at the top where it meets the skull."""
        p, step = self.p, self.spacing
        phis = _density_samples(-math.pi, math.pi, lambda a: np.full_like(a, 48.0), step * 1.6)
        ys = _density_samples(-170.0, -32.0, lambda t: np.ones_like(t), step * 2.5)[::-1]
        P, Y = np.meshgrid(phis, ys)
        rx = 0.8 * p["jaw_w"] + 18.0 + 10.0 * _smoothstep(-112.0, -140.0, Y)
        front = 50.0 if p["sex"] == "M" else 46.0
        back = front + 12.0 * _smoothstep(-85.0, -40.0, Y) + 8.0 * _smoothstep(-110.0, -140.0, Y)
        c = np.cos(P)
        x = rx * np.sin(P)
        z = -8.0 + 0.2 * (Y + 35.0) + np.where(c >= 0, front, back) * c
        return _Mesh("neck", np.stack([x, Y, z], axis=-1), wrap=True, texels=1)

    def _torso(self) -> _Mesh:
        """Shoulders and chest: superellipse sections sloping from inside the neck out to the shoulders."""
        step = self.spacing * 2.0
        neck = 0.8 * self.p["jaw_w"] + 18.0
        wide = self.p["shoulders"]
        ys = np.concatenate([np.linspace(-128.0, -215.0, max(8, int(110 / step))),
                             np.linspace(-222.0, -420.0, max(4, int(190 / (2 * step))))])
        w = np.interp(-ys, [128, 133, 148, 166, 188, 215, 420], [neck - 6, neck + 10, 0.62 * wide, 0.86 * wide,
                                                              0.98 * wide, wide, wide])
        d = np.interp(-ys, [128, 133, 155, 185, 420], [40.0, 52.0, 82.0, 98.0, 104.0])
        phis = _density_samples(-math.pi, math.pi, lambda a: np.full_like(a, 150.0), step)
        P, Y = np.meshgrid(phis, ys)
        e = 2 / 2.6
        s, c = np.sin(P), np.cos(P)
        x = w[:, None] * np.sign(s) * np.abs(s) ** e
        z = -27.0 + d[:, None] * np.sign(c) * np.abs(c) ** e
        return _Mesh("torso", np.stack([x, Y, z], axis=-1), wrap=True, texels=1)

    def _mouth(self) -> list[_Mesh]:
        """What the open mouth shows: the upper and lower teeth on the dental arch and a dark cavity behind."""
        L, step = self.L, min(self.spacing, 1.5)
        z_lip = float(self.shape.front_z(np.array(0.0), np.array(L.my)) + self.p["lip_z"] - 1.0)
        out = []
        for name, y0, y1, zoff, xs in (("teeth_up", L.my - 3.0, L.my + 6.0, -4.0, 0.9),
                                       ("teeth_low", L.my - 9.0, L.my - 2.0, -6.0, 0.8),
                                       ("cavity", L.my - 14.0, L.my + 7.0, -24.0, 1.3)):
            xw = L.mx * xs
            xx = np.linspace(-xw, xw, max(4, int(2 * xw / step)))
            yy = np.linspace(y1, y0, max(4, int((y1 - y0) / step)))
            X, Y = np.meshgrid(xx, yy)
            # The cavity is a bowl (deep in the middle, its walls coming forward to the mouth corners); the teeth
            # follow the dental arch.
            Z = z_lip + zoff + X ** 2 / 22.0 if name == "cavity" else z_lip + zoff - X ** 2 / 40.0
            surface = self.shape.front_z(X, Y) + _relief(self.p, L, X, Y)
            Z = np.minimum(Z, surface - 4.0)
            rest = np.stack([X, Y, Z], axis=-1)
            m = _Mesh(name, rest, texels=2)
            # Upper teeth stay with the skull, lower teeth go with the jaw, the cavity stretches between.
            weight = {"teeth_up": np.zeros_like(X), "teeth_low": np.ones_like(X),
                      "cavity": _smoothstep(L.my + 2.0, L.my - 12.0, Y)}[name]
            m.fields = {"AU26": self._jaw(weight, Z)}
            out.append(m)
        return out

    def _assemble(self) -> None:
        """All meshes as one vertex array, one triangle list, atlas coordinates and AU fields."""
        verts, tris, uvs, offsets = [], [], [], []
        field_list = []
        n = 0
        row = 0
        for m in self.meshes:
            r, c = m.rest.shape[:2]
            m.atlas_row = row
            verts.append(m.rest.reshape(-1, 3))
            tris.append(grid_triangles(r, c, m.skip) + n)
            uu, vv = np.meshgrid(np.arange(c) * m.texels, np.arange(r) * m.texels + row)
            uvs.append(np.stack([uu, vv], -1).reshape(-1, 2).astype(np.float32))
            f = np.zeros((len(GEOMETRIC_AUS), r * c, 3))
            for i, au in enumerate(GEOMETRIC_AUS):
                if m.fields and au in m.fields:
                    f[i] = m.fields[au].reshape(-1, 3)
            field_list.append(f)
            offsets.append(n)
            n += r * c
            row += (r - 1) * m.texels + 1 + 4
        self.offsets = offsets
        self.rest = np.concatenate(verts)
        self.triangles = np.concatenate(tris)
        corners = self.rest[self.triangles]
        tn = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        # Outward unit normals of the rest triangles, to skip the ones facing away before rasterising.
        self.tri_normals = tn / np.maximum(np.linalg.norm(tn, axis=1, keepdims=True), 1e-12)
        self.uv = np.concatenate(uvs)
        self.fields = np.concatenate(field_list, axis=1)
        self.atlas_shape = (row, max((m.rest.shape[1] - 1) * m.texels + 1 for m in self.meshes))
        # Per vertex: rest x and y of the face (for the eyelids) and whether it belongs to the face box region.
        head = self.head_rest_nohair.reshape(-1, 3)
        L, p = self.L, self.p
        top = L.by + p["brow_arch"] + p["brow_thick"] + 3.0
        face = (head[:, 1] <= top) & (head[:, 1] >= L.chin - 2.0) & (head[:, 2] >= -20.0)
        vattr = np.zeros((len(self.rest), 3), np.float32)
        vattr[: len(head), 0:2] = head[:, 0:2]
        vattr[: len(head), 2] = face
        self.vattr = vattr

    def _landmarks(self) -> None:
        """Rest positions of the landmarks and their AU displacement (same fields as the surface)."""
        L, shape, p = self.L, self.shape, self.p
        pts = np.array([[-L.ex, L.ey], [L.ex, L.ey], [0.0, L.nose_tip], [-L.mx, L.my], [L.mx, L.my], [0.0, L.chin]])
        x, y = pts[:, 0], pts[:, 1]
        z = shape.front_z(x, y) + _relief(p, L, x, y)
        rest = np.stack([x, y, z], -1)
        lower = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
        f = self._au_fields(rest, lower)
        self.lm_rest = rest
        self.lm_fields = np.stack([f[au] for au in GEOMETRIC_AUS])

    # ------------------------------------------------------------------- textures
    def _lattice(self, m: _Mesh, rest: np.ndarray) -> np.ndarray:
        """Rest points at the mesh's atlas texels (bilinear between vertices)."""
        k = m.texels
        r, c = rest.shape[:2]

        def lin(n: int) -> tuple[np.ndarray, np.ndarray]:
            t = np.arange((n - 1) * k + 1) / k
            i = np.minimum(np.floor(t).astype(int), n - 2)
            return i, (t - i)[:, None]

        ri, rf = lin(r)
        ci, cf = lin(c)
        a = rest[ri][:, ci] * (1 - cf[None]) + rest[ri][:, ci + 1] * cf[None]
        b = rest[ri + 1][:, ci] * (1 - cf[None]) + rest[ri + 1][:, ci + 1] * cf[None]
        return a * (1 - rf[:, :, None]) + b * rf[:, :, None]

    def _atlas(self) -> None:
        """Evaluate every mesh's texture at its texels: albedo and specular weight, and the head's wrinkle maps."""
        h, w = self.atlas_shape
        self.albedo = np.zeros((h, w, 4), np.float32)  # RGB and the specular weight
        wrinkles = np.zeros((h, w, 8), np.float32)
        for m in self.meshes:
            rest = self.head_rest_nohair if m.name == "head" else m.rest
            pts = self._lattice(m, rest)
            rows = slice(m.atlas_row, m.atlas_row + pts.shape[0])
            cols = slice(0, pts.shape[1])
            alb, spec, wr = getattr(self, f"_tex_{m.name}")(pts)
            self.albedo[rows, cols, :3] = alb
            self.albedo[rows, cols, 3] = spec
            if wr is not None:
                wrinkles[rows, cols] = wr
        # Two four-channel textures (what one bilinear lookup takes), contiguous for OpenCV.
        self.wrinkles_a = np.ascontiguousarray(wrinkles[..., :4])
        self.wrinkles_b = np.ascontiguousarray(wrinkles[..., 4:])

    def _tex_head(self, pts: np.ndarray):
        """Skin with mottling, the face's features, the ears' rims and the hair."""
        p, L = self.p, self.L
        shape = pts.shape[:2]
        mm = self.spacing / self.meshes[0].texels  # texel size, mm
        rng = np.random.default_rng(p["noise_seed"])
        n1 = _lattice_noise(rng, shape, 50.0 / mm).ravel()
        n2 = _lattice_noise(rng, shape, 6.0 / mm).ravel()
        n3 = _lattice_noise(rng, shape, 2.5 / mm).ravel()
        flat = pts.reshape(-1, 3)
        x, y, z = flat[:, 0], flat[:, 1], flat[:, 2]
        skin = np.asarray(p["skin"])
        col = skin[None] * (1 + 0.035 * n1 + 0.015 * n2)[:, None]
        spec = np.full(len(flat), 0.10)
        # Face features only where the face is.
        sel = np.nonzero((z > 5.0) & (y > L.chin - 15.0) & (y < L.by + 45.0))[0]
        c, sp, wr_face = self._face_texture(flat[sel], col[sel], n2[sel], n3[sel])
        col[sel], spec[sel] = c, sp
        wr = np.zeros((len(flat), 8), np.float32)
        wr[sel] = wr_face
        # Ears: a darker, redder rim.
        sel = np.nonzero(np.abs(x) > 45.0)[0]
        ear = _ears(p, y[sel], z[sel])
        col[sel] *= (1 - 0.12 * _smoothstep(1.0, 6.0, ear) * _smoothstep(12.0, 4.0, ear))[:, None]
        col[sel] *= 1 - 0.08 * _smoothstep(2.0, 6.0, ear)[:, None] * np.array([0.0, 0.35, 0.3])
        # Hair.
        alpha = np.arctan2(x, z + 5.0)
        hl = _hairline(p, L, alpha) + 0.8 * n2
        sel = np.nonzero(y > hl - 2.0)[0]
        hair = _smoothstep(hl[sel] - 1.2, hl[sel] + 1.2, y[sel])
        strands = 0.88 + 0.07 * np.sin(alpha[sel] * 140.0 + 0.9 * n1[sel]) \
            + 0.05 * np.sin(alpha[sel] * 330.0 + 1.7 * n2[sel]) + 0.06 * n1[sel] + 0.03 * n3[sel]
        hcol = np.asarray(p["hair"])[None] * strands[:, None]
        col[sel] = col[sel] * (1 - hair[:, None]) + hcol * hair[:, None]
        spec[sel] = spec[sel] * (1 - hair) + 0.08 * hair
        return np.clip(col, 0, 1).reshape(shape + (3,)), spec.reshape(shape), wr.reshape(shape + (8,))

    def _face_texture(self, pts: np.ndarray, col: np.ndarray, n2: np.ndarray, n3: np.ndarray):
        """Colour, specular weight and wrinkle maps of the face front (flat arrays)."""
        p, L = self.p, self.L
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        front = _smoothstep(20.0, 50.0, z)
        # Warm cheeks and nose; slightly darker eye surrounds.
        warm = _pair(x, y, 40.0, L.ey - 22.0, 14.0, 12.0) + 0.6 * _gauss(x, y, 0, L.nose_tip, 8, 8)
        red = p["blush"] * front * warm
        col = col * (1 - red[:, None] * np.array([0.0, 0.35, 0.3]))
        col *= (1 - 0.10 * _pair(x, y, L.ex, L.ey + 1.0, 17.0, 10.0) * front)[:, None]
        spec = 0.10 + 0.06 * _gauss(x, y, 0, L.by + 25, 30, 20) + 0.1 * _gauss(x, y, 0, L.nose_tip, 6, 8)
        # Lips: vermilion with a Cupid's bow, and the dark line where they meet.
        ax = np.abs(x)
        t = np.clip(ax / L.mx, 0, 1)
        top = L.my + p["lip_u"] * (1 - t ** 2.2) ** 0.6 * (1 - 0.18 * np.exp(-(x / 2.2) ** 2)) \
            + 0.8 * np.exp(-((ax - 6) / 3.5) ** 2)
        bot = L.my - p["lip_l"] * (1 - t ** 2.5) ** 0.7
        soft = 0.5
        lip = _smoothstep(-soft, soft, top - y) * _smoothstep(-soft, soft, y - bot) * (ax < L.mx + 1) * front
        col = col * (1 - lip[:, None]) + np.asarray(p["lip_colour"]) * (1 + 0.03 * n2[:, None]) * lip[:, None]
        spec = spec + 0.25 * lip
        line = np.exp(-((y - L.my) / 0.7) ** 2) * np.clip(1 - t ** 4, 0, 1) * front
        col *= (1 - 0.65 * line)[:, None]
        # Nostrils and the alar crease.
        ala = p["nose_w"] - 5.5
        nostril = np.clip(1 - ((ax - 5.5) / 3.4) ** 2 - ((y - L.nose_tip + 5.2) / 2.0) ** 2, 0, 1) ** 0.5 * front
        col *= (1 - 0.8 * nostril)[:, None]
        crease = np.exp(-((np.sqrt(((ax - ala) / 6.5) ** 2 + ((y - L.nose_tip + 3) / 5.5) ** 2) - 1.0) / 0.12) ** 2)
        col *= (1 - 0.25 * crease * (y > L.nose_tip - 6) * front)[:, None]
        # Eyebrows.
        brow = self._brows(x, y) * front * np.clip(0.95 + 0.08 * n3, 0, 1)
        bcol = np.asarray(p["hair"]) * (1.1 - 0.6 * p["brow_dark"]) + 0.02
        col = col * (1 - brow[:, None]) + bcol * brow[:, None]
        # Stubble and beard.
        if p["stubble"] or p["beard"]:
            region = (_smoothstep(L.nose_base + 2, L.nose_base - 6, y) * _smoothstep(L.chin - 14, L.chin - 2, y)
                      * _smoothstep(55.0, 40.0, ax) * (1 - lip) * _smoothstep(-5, 10, z))
            region = np.maximum(region, _smoothstep(L.ey - 22, L.ey - 40, y) * _smoothstep(30.0, 15.0, z)
                                * _smoothstep(L.chin - 14, L.chin - 2, y) * _smoothstep(-12.0, 0.0, z))
            dens = (p["beard_density"] if p["beard"] else 0.12) * region * np.clip(0.75 + 0.35 * n3, 0, 1.2)
            col = col * (1 - dens[:, None]) + np.asarray(p["hair"]) * 0.9 * dens[:, None]
        return col, spec, self._wrinkle_maps(x, y, front)

    def _brows(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Opacity of the eyebrows: an arch from the inner head to the tail, thinning outward."""
        p, L = self.p, self.L
        ax = np.abs(x)
        b0, b1 = p["brow_in"], p["brow_out"]
        t = (ax - b0) / (b1 - b0)
        peak = 0.62
        arch = np.where(t < peak, np.sin(0.5 * math.pi * np.clip(t / peak, 0, 1)),
                        np.cos(0.5 * math.pi * np.clip((t - peak) / (1 - peak), 0, 1)) * 0.8 + 0.2)
        centre = L.by + p["brow_arch"] * arch - 1.5 * np.clip(t - peak, 0, 1)
        thick = p["brow_thick"] * (1.2 - 0.75 * np.clip(t, 0, 1))
        d = np.abs(y - centre) - 0.5 * thick
        along = _smoothstep(-0.08, 0.02, t) * _smoothstep(1.05, 0.9, t)
        strokes = 0.9 + 0.1 * np.sin(ax * 2.3 + y * 1.1)
        return p["brow_dark"] * _smoothstep(0.6, -0.4, d) * along * strokes

    def _wrinkle_maps(self, x: np.ndarray, y: np.ndarray, front: np.ndarray) -> np.ndarray:
        """Eight wrinkle and fold maps (0..1), each deepened by its AUs at render time: forehead centre (AU1) and
        sides (AU2), glabella (AU4), nose root (AU9), nasolabial fold (AU12, AU9), crow's feet (AU6), lower lid
        (AU6, AU7), marionette lines (AU15, AU16)."""
        L = self.L
        ax = np.abs(x)

        def lines(v: np.ndarray, period: float) -> np.ndarray:
            return (0.5 + 0.5 * np.cos(2 * math.pi * v / period)) ** 6

        fore = lines(y - L.by - 14.0 + 0.002 * x ** 2, 7.0)
        w = np.zeros(x.shape + (8,), np.float32)
        w[..., 0] = fore * _gauss(x, y, 0.0, L.by + 24.0, 24.0, 12.0)  # AU1: central forehead
        w[..., 1] = fore * _pair(x, y, 32.0, L.by + 22.0, 20.0, 11.0)  # AU2: lateral forehead
        w[..., 2] = np.exp(-((ax - 4.0) / 1.0) ** 2) * _gauss(x, y, 0.0, L.by - 3.0, 6.0, 7.0)  # AU4: glabella
        bunny = np.exp(-((ax - 8.0 - 0.6 * (L.nasion - y)) / 1.2) ** 2) * _gauss(x, y, 0, L.nasion - 6, 14, 6)
        w[..., 3] = lines(y - L.nasion, 3.2) * _gauss(x, y, 0.0, L.nasion - 5.0, 9.0, 5.0) + 0.7 * bunny  # AU9
        # Nasolabial fold: a curve from above the ala to beside the mouth corner.
        tt = np.clip((L.nose_tip - y) / (L.nose_tip - L.my + 8.0), 0, 1)
        cx = (self.p["nose_w"] + 1.0) + (L.mx + 4.0 - self.p["nose_w"] - 1.0) * tt ** 0.8 + 3.0 * np.sin(math.pi * tt)
        w[..., 4] = np.exp(-((ax - cx) / 1.3) ** 2) * _smoothstep(L.nose_tip + 2, L.nose_tip - 2, y) \
            * _smoothstep(L.my - 10, L.my - 3, y)  # AU12 / AU9
        ang = np.arctan2(y - L.ey, ax - L.ex - 16.0)
        r = np.hypot(y - L.ey, ax - L.ex - 16.0)
        w[..., 5] = (0.5 + 0.5 * np.cos(ang * 9.0)) ** 4 * np.exp(-((r - 6.0) / 5.0) ** 2) * (ax > L.ex + 14)  # AU6
        lid = L.ey - 7.5 - 0.02 * (ax - L.ex) ** 2
        w[..., 6] = np.exp(-((y - lid) / 0.9) ** 2) * _pair(x, y, L.ex, L.ey - 7, 11, 6)
        # Marionette lines below the mouth corners (AU15) and the chin (AU15/AU16).
        w[..., 7] = np.exp(-((ax - L.mx - 2.0 + 0.15 * (L.my - y)) / 1.2) ** 2) * _smoothstep(L.my, L.my - 4, y) \
            * _smoothstep(L.my - 22, L.my - 12, y)
        return w * front[..., None]

    def _tex_curtain(self, pts: np.ndarray):
        """Long hair: strands running down."""
        p = self.p
        rng = np.random.default_rng(p["noise_seed"] + 1)
        a = np.arctan2(pts[..., 0], pts[..., 2] + 5.0)
        mm = self.spacing * 1.5 / 2
        n1 = _lattice_noise(rng, pts.shape[:2], 40.0 / mm)
        n2 = _lattice_noise(rng, pts.shape[:2], 8.0 / mm)
        strands = 0.88 + 0.07 * np.sin(a * 140.0 + 0.9 * n1) + 0.05 * np.sin(a * 330.0 + 1.7 * n2) + 0.06 * n1
        col = np.asarray(p["hair"]) * strands[..., None] * 0.92
        return np.clip(col, 0, 1), 0.08, None

    def _tex_neck(self, pts: np.ndarray):
        """Skin, shadowed under the jaw."""
        p = self.p
        y = pts[..., 1]
        z = pts[..., 2]
        shade = 0.55 + 0.45 * _smoothstep(-75.0, -118.0, y + 0.25 * np.clip(z, 0, None))
        col = np.asarray(p["skin"]) * shade[..., None]
        return col, 0.06, None

    def _tex_torso(self, pts: np.ndarray):
        """A plain shirt with soft folds."""
        p = self.p
        rng = np.random.default_rng(p["session_seed"])
        fold = 1 + 0.05 * _lattice_noise(rng, pts.shape[:2], 6.0)
        col = np.asarray(p["shirt"]) * fold[..., None]
        return np.clip(col, 0, 1), 0.03, None

    def _tex_teeth(self, pts: np.ndarray, upper: bool):
        """A row of teeth with gaps, gum above (upper) or below (lower), darker toward the back."""
        L = self.L
        x, y = pts[..., 0], pts[..., 1]
        gum = L.my + 4.0 if upper else L.my - 9.0
        tooth = np.array([0.90, 0.87, 0.78])
        gumc = np.array([0.62, 0.30, 0.30])
        widths = np.cumsum([0, 4.3, 3.4, 4.0, 3.8, 3.6, 5.0])
        gap = np.zeros_like(x)
        for wpos in widths:
            gap = np.maximum(gap, np.exp(-((np.abs(x) - wpos) / 0.35) ** 2))
        inside = _smoothstep(gum, gum - 1.0, y) if upper else _smoothstep(gum, gum + 1.0, y)
        col = tooth * (1 - 0.35 * gap)[..., None] * inside[..., None] + gumc * (1 - inside)[..., None]
        shade = 1 - 0.5 * _smoothstep(0.0, 1.0, (np.abs(x) - 0.5 * L.mx) / (0.5 * L.mx))
        col = col * shade[..., None]
        return col, 0.25, None

    def _tex_teeth_up(self, pts: np.ndarray):
        return self._tex_teeth(pts, True)

    def _tex_teeth_low(self, pts: np.ndarray):
        return self._tex_teeth(pts, False)

    def _tex_cavity(self, pts: np.ndarray):
        """The dark inside of the mouth, the tongue low down."""
        L = self.L
        y = pts[..., 1]
        tongue = _smoothstep(L.my - 6.0, L.my - 14.0, y)
        col = np.array([0.10, 0.03, 0.03]) * (1 - tongue[..., None]) + np.array([0.42, 0.14, 0.14]) * tongue[..., None]
        return col, 0.1, None

    # ------------------------------------------------------------------- rendering
    def render(self, aus: np.ndarray, scene: Scene, height: int, width: int) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
        """Render with AU intensities ``aus`` (ordered as ``AU_NAMES``) under ``scene``.

        Returns the image (H x W x 3 float32, 0..1, before camera noise), landmarks (6 x 2 pixels, ordered as
        ``LANDMARK_NAMES``) and the visible face box (x0, y0, x1, y1; NaN when no face pixel is visible)."""
        a = np.asarray(aus, dtype=float)
        geo = a[[AU_NAMES.index(au) for au in GEOMETRIC_AUS]]
        verts = self.rest + _combine(geo, self.fields)
        normals = np.empty_like(verts)
        for m, off in zip(self.meshes, self.offsets):
            r, c = m.rest.shape[:2]
            grid = verts[off: off + r * c].reshape(r, c, 3)
            normals[off: off + r * c] = grid_normals(grid, wrap=m.wrap).reshape(-1, 3)
        rot = _rotation(scene.yaw, scene.pitch, scene.roll)
        pivot = np.array([0.0, -60.0, 0.0])
        cam = _rotate(verts - pivot, rot) + pivot
        s = scene.scale
        cx, cy = scene.centre
        xy = np.stack([cx + s * cam[:, 0], cy - s * cam[:, 1]], -1)
        tris = self.triangles[_dot(self.tri_normals, rot[2]) > -0.3]
        frags = rasterize(xy, cam[:, 2], tris, height, width)
        attr = frags.interpolate(tris, np.concatenate(
            [self.uv, _rotate(normals, rot).astype(np.float32), self.vattr], 1))
        albedo = _sample(self.albedo, attr[:, 0], attr[:, 1]).astype(np.float64)
        spec = albedo[:, 3].copy()
        albedo = albedo[:, :3]
        gloss = np.zeros(len(albedo))
        ai = {au: a[i] for i, au in enumerate(AU_NAMES)}
        face = np.nonzero(attr[:, 7] > 0.5)[0]
        # Wrinkles and folds deepen with their action units.
        weights = np.array([ai["AU1"], ai["AU2"], ai["AU4"], ai["AU9"], 0.3 + ai["AU12"] + 0.6 * ai["AU9"],
                            ai["AU6"], 0.3 + 0.8 * ai["AU6"] + 0.6 * ai["AU7"], 0.15 + ai["AU15"] + 0.4 * ai["AU16"]])
        if face.size:
            u, v = attr[face, 0], attr[face, 1]
            wk = 0.3 * np.clip(weights, 0, 1.5) * AU_GAIN
            darken = _dot(_sample(self.wrinkles_a, u, v), wk[:4]) + _dot(_sample(self.wrinkles_b, u, v), wk[4:])
            albedo[face] *= (1 - np.clip(darken, 0, 0.6))[:, None]
            sub_a, sub_s, sub_g = albedo[face], spec[face], gloss[face]
            self._eyes(attr[face, 5].astype(float), attr[face, 6].astype(float), sub_a, sub_s, sub_g, ai, 1.0 / s)
            albedo[face], spec[face], gloss[face] = sub_a, sub_s, sub_g
        # Shading: wrapped Lambert, hemispheric ambient, Blinn-Phong for skin and a sharp highlight for eyes.
        n = attr[:, 2:5].astype(np.float64)
        n /= np.sqrt(np.maximum(np.einsum("ij,ij->i", n, n), 1e-18))[:, None]
        light = np.asarray(scene.light, dtype=float)
        light /= np.linalg.norm(light)
        lc = np.asarray(scene.light_colour, dtype=float)
        ndl = _dot(n, light)
        diff = np.clip((ndl + 0.25) / 1.25, 0, 1)
        half = light + np.array([0.0, 0.0, 1.0])
        half /= np.linalg.norm(half)
        ndh = np.clip(_dot(n, half), 0, 1)
        amb = scene.ambient * (0.78 + 0.22 * n[:, 1])
        lit = albedo * (amb[:, None] * (lc * 0.6 + 0.4) + scene.diffuse * diff[:, None] * lc)
        hl = scene.diffuse * (spec * 0.6 * ndh ** 14 + gloss * 1.6 * ndh ** 90) * (ndl > 0)
        lit += hl[:, None] * lc
        # Background: a lit wall with a gradient and a vignette.
        u, v = _unit_grid(height, width)
        gx, gy = scene.bg_gradient
        shade = 1 + gx * u + gy * v - scene.vignette * (u * u + v * v)
        bg = (np.asarray(scene.background) * (0.7 + 0.3 * lc)).astype(np.float32)
        img = shade[..., None] * bg
        img.reshape(-1, 3)[frags.pixel] = lit
        # Landmarks and the face box.
        lm = self.lm_rest + _combine(geo, self.lm_fields)
        lm = _rotate(lm - pivot, rot) + pivot
        lm_xy = np.stack([cx + s * lm[:, 0], cy - s * lm[:, 1]], -1)
        if face.size:
            fy, fx = np.divmod(frags.pixel[face], width)
            box = np.array([fx.min(), fy.min(), fx.max() + 1, fy.max() + 1], dtype=float)
        else:
            box = np.full(4, np.nan)
        return img, lm_xy, box

    def _eyes(self, x: np.ndarray, y: np.ndarray, albedo: np.ndarray, spec: np.ndarray, gloss: np.ndarray,
              a: dict[str, float], mm_per_px: float) -> None:
        """Draw the eyes (in place) on face pixels at rest coordinates ``x, y``: lids, lashes, eyeballs."""
        p, L = self.p, self.L
        g = AU_GAIN * p["expressive"]
        hu = max(0.6, p["eye_hu"] + g * (3.2 * a["AU5"] - 1.1 * a["AU7"] - 0.6 * a["AU4"] - 0.5 * a["AU6"]))
        hl = max(0.5, p["eye_hl"] - g * (1.9 * a["AU7"] + 1.7 * a["AU6"] - 0.5 * a["AU5"]))
        crease = max(1.0, p["crease"] - g * (1.8 * a["AU5"] - 0.8 * a["AU4"]))
        hw = p["eye_hw"]
        soft = max(0.3, 0.55 * mm_per_px)
        for side in (-1.0, 1.0):
            dx = x - side * L.ex
            dy = y - L.ey
            sel = np.nonzero((np.abs(dx) < hw * 1.35) & (np.abs(dy) < 14.0))[0]
            if sel.size == 0:
                continue
            dx, dy = dx[sel], dy[sel]
            t = side * dx / hw
            bump = np.clip(1 - t * t, 0, 1)
            mid = 0.5 * p["eye_tilt"] * t
            yu = mid + hu * bump ** 0.55 * (1 - 0.12 * t)
            yl = mid - hl * bump ** 0.8 * (1 + 0.1 * t)
            inside = _smoothstep(-soft, soft, yu - dy) * _smoothstep(-soft, soft, dy - yl) * (np.abs(t) < 1)
            r = np.hypot(dx, dy)
            ri = p["iris_r"]
            iris = _smoothstep(ri + 0.5 * soft, ri - 0.5 * soft, r)
            pupil = _smoothstep(2.3 + 0.5 * soft, 2.3 - 0.5 * soft, r)
            sclera = np.array([0.86, 0.83, 0.80]) * (1 - 0.25 * np.abs(t) ** 3)[:, None]
            sclera = sclera * (1 - 0.25 * _smoothstep(-0.7, -0.95, t)[:, None] * np.array([0.0, 0.5, 0.5]))
            fib = 1 + 0.12 * np.sin(np.arctan2(dy, dx) * 14.0)
            irisc = np.asarray(p["eye_colour"]) * ((0.75 + 0.35 * r / ri) * fib
                                                   * (1 - 0.5 * _smoothstep(0.78 * ri, ri, r)))[:, None]
            ball = sclera * (1 - iris)[:, None] + irisc * iris[:, None]
            ball = ball * (1 - pupil)[:, None] + 0.02 * pupil[:, None]
            ball *= (1 - 0.45 * np.exp(-np.clip(yu - dy, 0, None) / 1.2))[:, None]
            cur = albedo[sel]
            cur = cur * (1 - inside)[:, None] + ball * inside[:, None]
            # Lashes along the upper lid, the lower lid margin, the lid crease.
            lw = 0.7 + 0.7 * np.clip((t + 1) / 2, 0, 1)
            above = dy - yu
            lash = _smoothstep(-soft, 0.2 * soft, above) * _smoothstep(lw + soft, lw - soft, above) * \
                np.clip(1 - (t / 1.08) ** 2, 0, 1) ** 0.3
            cur = cur * (1 - 0.88 * lash)[:, None] + 0.05 * 0.88 * lash[:, None]
            lower = _smoothstep(0.7 + soft, 0.0, yl - dy) * _smoothstep(-soft, 0.0, yl - dy) * bump ** 0.3
            cur *= (1 - 0.3 * lower)[:, None]
            ycr = yu + crease * bump ** 0.5 + 0.6
            cur *= (1 - 0.22 * np.exp(-((dy - ycr) / max(0.6, soft)) ** 2) * (np.abs(t) < 1.05))[:, None]
            albedo[sel] = cur
            spec[sel] = spec[sel] * (1 - inside)
            gloss[sel] = np.maximum(gloss[sel], inside)


@dataclass
class Scene:
    """Camera, pose and light for one rendering. Angles in degrees; ``light`` points from the face toward the
    light in camera space (x right, y up, z toward the camera)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0  # pixels per mm
    centre: tuple[float, float] = (128.0, 140.0)  # pixel position of the head origin
    light: tuple[float, float, float] = (0.3, 0.4, 1.0)
    light_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.35
    diffuse: float = 0.7
    background: tuple[float, float, float] = (0.6, 0.6, 0.62)
    bg_gradient: tuple[float, float] = (0.0, 0.0)
    vignette: float = 0.0


# Small dense products written out: numpy would hand them to a multi-threaded BLAS, which oversubscribes the CPUs
# when several renderers run side by side.
def _dot(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``v @ w`` for v (N x C) and w (C,)."""
    out = v[:, 0] * w[0]
    for i in range(1, len(w)):
        out = out + v[:, i] * w[i]
    return out


def _rotate(v: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``v @ rot.T`` for v (N x 3)."""
    return np.stack([_dot(v, rot[0]), _dot(v, rot[1]), _dot(v, rot[2])], axis=1)


def _combine(weights: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """Sum of ``fields[k] * weights[k]`` (K x N x 3 -> N x 3), skipping zero weights."""
    out = np.zeros(fields.shape[1:])
    for k in np.nonzero(weights)[0]:
        out += fields[k] * weights[k]
    return out


def _sample(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``texture`` (H x W x C float32, C <= 4) at texel coordinates ``u, v`` (K,): K x C."""
    import cv2

    k = len(u)
    cols = 256
    rows = max(1, -(-k // cols))
    mu = np.full(rows * cols, -10.0, np.float32)
    mv = np.full(rows * cols, -10.0, np.float32)
    mu[:k] = u
    mv[:k] = v
    out = cv2.remap(texture, mu.reshape(rows, cols), mv.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(rows * cols, -1)[:k]


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _unit_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to -0.5..0.5 (cached per size)."""
    if (height, width) not in _GRIDS:
        v, u = np.mgrid[0:height, 0:width].astype(np.float32)
        _GRIDS[(height, width)] = (u / max(width - 1, 1) - 0.5, v / max(height - 1, 1) - 0.5)
    return _GRIDS[(height, width)]


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation: yaw about y (negative = the subject turns to their right, nose to image left), then pitch
    about x (positive = chin up), then roll about the view axis (positive = counter-clockwise on screen)."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry
