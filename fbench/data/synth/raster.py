"""A small z-buffered triangle rasteriser in numpy, for the synthetic face renderer (``fbench.data.synth.build``).

Orthographic: vertices arrive already projected to pixel coordinates (pixel centres at integer positions) with a
depth per vertex (larger = nearer the camera). Triangles are tested against the pixel centres inside their bounding
boxes, all candidates of all triangles at once, and the nearest hit per pixel wins. Attributes are then interpolated
per pixel with the barycentric weights of the winning hit, so textures and normals stay sharp however coarse the
mesh is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fragments:
    """The visible surface: for each covered pixel (flat index ``pixel``), its triangle and barycentric weights."""

    height: int
    width: int
    pixel: np.ndarray  # (K,) int64, flat pixel indices, ascending
    triangle: np.ndarray  # (K,) int64, index into the triangle array
    weights: np.ndarray  # (K, 3) float64, barycentric weights of the triangle's three vertices
    depth: np.ndarray  # (K,) float64

    def interpolate(self, triangles: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """Per-vertex ``attributes`` (N x C) interpolated at the covered pixels: K x C."""
        corners = triangles[self.triangle]
        w = self.weights.astype(attributes.dtype)
        out = attributes[corners[:, 0]] * w[:, 0:1]
        out += attributes[corners[:, 1]] * w[:, 1:2]
        out += attributes[corners[:, 2]] * w[:, 2:3]
        return out

    def image(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter per-fragment ``values`` (K or K x C) into an H x W (x C) image."""
        shape = (self.height * self.width,) + values.shape[1:]
        out = np.full(shape, fill, dtype=values.dtype)
        out[self.pixel] = values
        return out.reshape((self.height, self.width) + values.shape[1:])

    def mask(self) -> np.ndarray:
        out = np.zeros(self.height * self.width, dtype=bool)
        out[self.pixel] = True
        return out.reshape(self.height, self.width)


def rasterize(xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray, height: int, width: int,
              cull: bool = True) -> Fragments:
    """Rasterise ``triangles`` (M x 3 vertex indices) of vertices at pixel positions ``xy`` (N x 2, x right, y down)
    with ``depth`` (N, larger = nearer). With ``cull``, back faces are dropped: front faces are wound clockwise on
    the y-down screen (counter-clockwise seen from outside with y up)."""
    p0 = xy[triangles[:, 0]]
    p1 = xy[triangles[:, 1]]
    p2 = xy[triangles[:, 2]]
    area = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
    lo = np.minimum(np.minimum(p0, p1), p2)
    hi = np.maximum(np.maximum(p0, p1), p2)
    x0 = np.maximum(np.ceil(lo[:, 0]), 0)
    y0 = np.maximum(np.ceil(lo[:, 1]), 0)
    x1 = np.minimum(np.floor(hi[:, 0]), width - 1)
    y1 = np.minimum(np.floor(hi[:, 1]), height - 1)
    keep = (area < -1e-9 if cull else np.abs(area) > 1e-9) & (x0 <= x1) & (y0 <= y1)
    index = np.nonzero(keep)[0]
    if index.size == 0:
        return _empty(height, width)
    p0, p1, p2 = p0[index], p1[index], p2[index]
    inv = 1.0 / area[index]
    x0, y0 = x0[index], y0[index]
    e1 = p1 - p0
    e2 = p2 - p0
    # Barycentric weights of vertices 1 and 2 as affine functions of the offset (ox, oy) from the box corner.
    a1, b1 = e2[:, 1] * inv, -e2[:, 0] * inv
    a2, b2 = -e1[:, 1] * inv, e1[:, 0] * inv
    c1 = a1 * (x0 - p0[:, 0]) + b1 * (y0 - p0[:, 1])
    c2 = a2 * (x0 - p0[:, 0]) + b2 * (y0 - p0[:, 1])
    z = depth[triangles[index]]
    dz1, dz2 = z[:, 1] - z[:, 0], z[:, 2] - z[:, 0]
    az, bz, cz = a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2, z[:, 0] + c1 * dz1 + c2 * dz2
    # One candidate per pixel centre in each triangle's bounding box.
    wb = (x1[index] - x0 + 1).astype(np.int64)
    hb = (y1[index] - y0 + 1).astype(np.int64)
    count = wb * hb
    rep = np.repeat(np.arange(index.size), count)
    local = np.arange(rep.size) - (np.cumsum(count) - count)[rep]
    wr = wb[rep]
    oy = local // wr
    ox = local - oy * wr
    oxf = ox.astype(np.float32)
    oyf = oy.astype(np.float32)
    f32 = np.float32
    w1 = a1.astype(f32)[rep] * oxf + b1.astype(f32)[rep] * oyf + c1.astype(f32)[rep]
    w2 = a2.astype(f32)[rep] * oxf + b2.astype(f32)[rep] * oyf + c2.astype(f32)[rep]
    eps = f32(-1e-5)
    hit = np.nonzero((w1 >= eps) & (w2 >= eps) & (w1 + w2 <= 1 - eps))[0]
    if hit.size == 0:
        return _empty(height, width)
    t = rep[hit]
    ox, oy = ox[hit], oy[hit]
    w1, w2 = w1[hit], w2[hit]
    dep = az[t] * ox + bz[t] * oy + cz[t]
    pix = (y0[t].astype(np.int64) + oy) * width + x0[t].astype(np.int64) + ox
    zbuf = np.full(height * width, -np.inf)
    np.maximum.at(zbuf, pix, dep)
    win = np.nonzero(dep == zbuf[pix])[0]
    # Ties (a pixel centre on an edge shared by two triangles) keep one hit, the same one every run.
    choice = np.full(height * width, -1, dtype=np.int64)
    choice[pix[win]] = win
    chosen = choice[choice >= 0]
    w1 = w1[chosen].astype(np.float64)
    w2 = w2[chosen].astype(np.float64)
    weights = np.stack([1.0 - w1 - w2, w1, w2], axis=1)
    return Fragments(height, width, pix[chosen], index[t[chosen]], weights, dep[chosen])


def _empty(height: int, width: int) -> Fragments:
    empty = np.zeros(0, dtype=np.int64)
    return Fragments(height, width, empty, empty, np.zeros((0, 3)), np.zeros(0))


def grid_triangles(rows: int, cols: int, skip: np.ndarray | None = None) -> np.ndarray:
    """Triangles of a rows x cols vertex grid (vertex ``r * cols + c``), two per quad, wound counter-clockwise when
    rows run down and columns run right as seen from outside. ``skip`` (rows-1 x cols-1 bool) drops quads."""
    rows_2d, cols_2d = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    if skip is not None:
        r, c = rows_2d[~skip], cols_2d[~skip]
    else:
        r, c = rows_2d.ravel(), cols_2d.ravel()
    a = r * cols + c
    b = a + 1
    d = a + cols
    e = d + 1
    # Seen from outside with rows going down the screen and columns going right: a b / d e.
    first = np.stack([a, d, b], axis=1)
    second = np.stack([b, d, e], axis=1)
    return np.concatenate([first, second]).astype(np.int64)


def grid_normals(points: np.ndarray, wrap: bool = False) -> np.ndarray:
    """Outward unit normals of a rows x cols x 3 grid surface whose rows run top to bottom and columns left to right
    as seen from outside. ``wrap``: the first and last columns are the same seam (a closed ring)."""
    rows, cols = points.shape[:2]
    if wrap:
        left = np.r_[cols - 2, np.arange(cols - 1)]
        right = np.r_[np.arange(1, cols), 1]
    else:
        left = np.r_[0, np.arange(cols - 1)]
        right = np.r_[np.arange(1, cols), cols - 1]
    up = np.r_[0, np.arange(rows - 1)]
    down = np.r_[np.arange(1, rows), rows - 1]
    du = points[:, right] - points[:, left]
    dv = points[down] - points[up]
    n = np.cross(dv, du)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.maximum(norm, 1e-12)
