"""A per-sample face frame fitted to landmarks: where occluders and masks are placed and drawn.

Frame coordinates (u, v) are in units of D (the eye-midpoint-to-chin distance, as in the landmark model of
``fbench.perturb.landmarks``), with the origin at the eye midpoint, u along the eye line (to the image right
of an upright face) and v down the face. The frame also carries an estimate of the head's yaw, so points of the
3-D head model can be projected into it (``project``), and a face box (``face_box``): forehead to chin, cheek
to cheek (nose tip to cheek for a profile).

Landmarks may come with their uncertainty (N x 6 x 4: x, y and half-widths along x and y, as the decode cache
stores calibrated positions, :mod:`fbench.data.placement`); the frame keeps it, turned into frame units
(``spread``), so that occluders aimed at a point can reach wherever the point may be. Exact landmarks (N x 6 x 2,
or zero half-widths) have no spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fbench.perturb.landmarks import EYE_SPAN, EYE_Z, MOUTH_SPAN, NOSE_SHIFT, NOSE_Z
from fbench.perturb.raster import col, pixel_grid

MOUTH_Y = 0.68
# The face box, in model units: forehead above the eye line, chin below it, cheeks at +-X with depth Z.
FOREHEAD_V = -0.45
CHIN_V = 1.02
CHEEK_X, CHEEK_Z = 0.72, -0.20


def _norm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x * x + y * y)


@dataclass
class FaceFrame:
    origin_x: torch.Tensor  # (N,) eye midpoint, pixels
    origin_y: torch.Tensor
    right_x: torch.Tensor   # (N,) unit vector along u, in pixels' axes
    right_y: torch.Tensor
    scale: torch.Tensor     # (N,) pixels per unit D
    cos_yaw: torch.Tensor   # (N,)
    sin_yaw: torch.Tensor
    points: torch.Tensor    # (N, 6, 2) the landmarks in frame coordinates
    spread: torch.Tensor    # (N, 6, 2) half-widths of their uncertainty along u and v (frame units; 0: exact)
    height: int
    width: int

    @classmethod
    def from_landmarks(cls, landmarks: torch.Tensor, height: int, width: int) -> FaceFrame:
        """Fit the frame to (N, 6, 2) normalised landmarks (no NaN) of (height x width) images, or (N, 6, 4) with
        their uncertainty (half-widths along x and y, normalised), which becomes ``spread``."""
        lm = landmarks.to(torch.float32)
        half = lm[..., 2:] if lm.shape[-1] == 4 else torch.zeros_like(lm)
        lm = lm[..., :2]
        px = lm[..., 0] * width
        py = lm[..., 1] * height
        (elx, erx, nx, mlx, mrx, cx), (ely, ery, ny, mly, mry, cy) = px.unbind(1), py.unbind(1)
        ex, ey = (elx + erx) * 0.5, (ely + ery) * 0.5
        mx, my = (mlx + mrx) * 0.5, (mly + mry) * 0.5
        # Scale: the eye-to-chin distance, averaged with the eye-to-mouth distance over its model value.
        scale = 0.5 * (_norm(cx - ex, cy - ey) + _norm(mx - ex, my - ey) / MOUTH_Y)
        scale = torch.clamp(scale, min=1e-3 * max(height, width, 1))
        # "Down" from the eyes through the mouth and chin; "right" from the eye line where the eyes are apart.
        dx = (mx - ex) / MOUTH_Y + (cx - ex)
        dy = (my - ey) / MOUTH_Y + (cy - ey)
        dn = _norm(dx, dy)
        ok = dn > 1e-6
        dx = torch.where(ok, dx / torch.clamp(dn, min=1e-6), torch.zeros_like(dx))
        dy = torch.where(ok, dy / torch.clamp(dn, min=1e-6), torch.ones_like(dy))
        down_right_x, down_right_y = dy, -dx
        evx, evy = erx - elx, ery - ely
        ed = _norm(evx, evy)
        flip = torch.where(evx * down_right_x + evy * down_right_y < 0, -1.0, 1.0)
        evx, evy = evx * flip / torch.clamp(ed, min=1e-6), evy * flip / torch.clamp(ed, min=1e-6)
        w = torch.clamp((ed / scale - 0.30) / 0.20, 0.0, 1.0)
        rx, ry = w * evx + (1.0 - w) * down_right_x, w * evy + (1.0 - w) * down_right_y
        rn = torch.clamp(_norm(rx, ry), min=1e-6)
        rx, ry = rx / rn, ry / rn
        # Yaw from the nose's shift off the eye midpoint (sin) and the eye and mouth spans (cos).
        def along(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (x * rx + y * ry) / scale

        sin_est = along(nx - ex, ny - ey) / NOSE_SHIFT
        cos_est = 0.5 * (torch.clamp(along(evx * ed * flip, evy * ed * flip), min=0.0) / EYE_SPAN
                         + torch.clamp(along(mrx - mlx, mry - mly), min=0.0) / MOUTH_SPAN)
        r = _norm(sin_est, cos_est)
        valid = r > 1e-6
        cos_yaw = torch.where(valid, cos_est / torch.clamp(r, min=1e-6), torch.ones_like(r))
        sin_yaw = torch.where(valid, sin_est / torch.clamp(r, min=1e-6), torch.zeros_like(r))
        # Landmarks in frame coordinates.
        qx, qy = px - ex[:, None], py - ey[:, None]
        pu = (qx * rx[:, None] + qy * ry[:, None]) / scale[:, None]
        pv = (qy * rx[:, None] - qx * ry[:, None]) / scale[:, None]
        # The uncertainty box (half-widths along the image axes, in pixels) seen along u and v.
        hx, hy = half[..., 0] * width, half[..., 1] * height
        su = (hx * rx[:, None].abs() + hy * ry[:, None].abs()) / scale[:, None]
        sv = (hx * ry[:, None].abs() + hy * rx[:, None].abs()) / scale[:, None]
        return cls(ex, ey, rx, ry, scale, cos_yaw, sin_yaw, torch.stack([pu, pv], dim=-1),
                   torch.stack([su, sv], dim=-1), height, width)

    @property
    def count(self) -> int:
        return int(self.scale.shape[0])

    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame coordinates (u, v) of every pixel centre, each (N, H, W)."""
        xs, ys = pixel_grid(self.height, self.width, self.scale.device)
        qx = xs - col(self.origin_x)
        qy = ys - col(self.origin_y)
        rx, ry, s = col(self.right_x), col(self.right_y), col(self.scale)
        return (qx * rx + qy * ry) / s, (qy * rx - qx * ry) / s

    def project(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame coordinates of head-model points (X, Y, Z), each (N, ...) or broadcastable to it."""
        dims = max(x.dim(), y.dim(), z.dim(), 1)
        shape = (-1,) + (1,) * (dims - 1)
        c, s = self.cos_yaw.reshape(shape), self.sin_yaw.reshape(shape)
        return x * c + (z - EYE_Z) * s, y + torch.zeros_like(x)

    def depth(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Depth towards the camera of head-model points after the yaw turn."""
        shape = (-1,) + (1,) * (max(x.dim(), z.dim(), 1) - 1)
        return z * self.cos_yaw.reshape(shape) - x * self.sin_yaw.reshape(shape)

    def face_box(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u0, u1, v0, v1), each (N,): forehead to chin, and the visible width of the face."""
        c, s = self.cos_yaw, self.sin_yaw
        cheek_l = -CHEEK_X * c + (CHEEK_Z - EYE_Z) * s
        cheek_r = CHEEK_X * c + (CHEEK_Z - EYE_Z) * s
        nose = (NOSE_Z - EYE_Z) * s
        pu, pv = self.points[..., 0], self.points[..., 1]
        lo_pts, hi_pts = pu[:, 0], pu[:, 0]
        for i in range(1, pu.shape[1]):
            lo_pts, hi_pts = torch.minimum(lo_pts, pu[:, i]), torch.maximum(hi_pts, pu[:, i])
        u0 = torch.minimum(torch.minimum(cheek_l, nose), lo_pts - 0.1)
        u1 = torch.maximum(torch.maximum(cheek_r, nose), hi_pts + 0.1)
        v0 = torch.minimum(torch.full_like(u0, FOREHEAD_V), torch.minimum(pv[:, 0], pv[:, 1]) - 0.3)
        v1 = torch.maximum(torch.full_like(u0, CHIN_V), pv[:, 5] + 0.02)
        return u0, u1, v0, v1

    def face_box_mask(self) -> torch.Tensor:
        """(N, H, W) bool: the pixels inside the face box."""
        u, v = self.grid()
        u0, u1, v0, v1 = (col(t) for t in self.face_box())
        return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
