"""Canonical landmark positions in a face crop, by KDEF pose, and filling unknown landmarks with them.

The positions come from a small 3-D head model (``MODEL``) turned by the pose's yaw and projected
orthographically into a square crop whose head centre sits near x = 0.5. Model units: D, the distance from the
eye midpoint to the chin; X to the image right of a frontal face, Y down from the eye line, Z towards the
camera. A frontal crop puts the eyes at y = 0.40, 0.32 apart, the mouth at y = 0.76 and the chin at y = 0.93,
about where a detector box widened by 15 % puts them. A turned head (yaw < 0: the subject turned to their
right, the face points to the image left) moves the nose towards the side it points to and brings the far eye
towards the nose; at +-90 degrees both eyes project to one point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fbench.data.table import KDEF_YAW, LANDMARKS
from fbench.errors import FbenchError

# Frontal crop placement: eye-midpoint y and the eye-to-chin distance, in normalised crop units.
EYE_Y = 0.40
SCALE = 0.53
# Depth of the eye plane (model units); projected positions are measured from the eye midpoint.
EYE_Z = 0.377
NOSE_Z = 0.60
# The head model, in LANDMARKS order: (X, Y, Z) in units of D.
MODEL = (
    (-0.302, 0.0, EYE_Z),   # eye_l (image left in a frontal view)
    (0.302, 0.0, EYE_Z),    # eye_r
    (0.0, 0.377, NOSE_Z),   # nose tip
    (-0.245, 0.68, 0.36),   # mouth_l
    (0.245, 0.68, 0.36),    # mouth_r
    (0.0, 1.0, 0.40),       # chin
)
# Projected landmark spacings per unit of cos/sin yaw (used to estimate yaw from landmarks).
# Crops of turned heads sit off the head centre, towards the side the face points to (as the detector boxes
# and fbench.data.faces.KDEF_FALLBACK_BOXES do): the face moves back towards the crop centre by this much at 90.
CROP_SHIFT = 0.12
EYE_SPAN = 2 * 0.302        # eye_r.x - eye_l.x = EYE_SPAN * cos(yaw)
MOUTH_SPAN = 2 * 0.245
NOSE_SHIFT = NOSE_Z - EYE_Z  # nose.x - eye_mid.x = NOSE_SHIFT * sin(yaw)


def project(yaw_degrees: float) -> list[tuple[float, float]]:
    """Normalised (x, y) of the model's landmarks in a crop of a head turned by ``yaw_degrees``."""
    yaw = math.radians(yaw_degrees)
    c, s = math.cos(yaw), math.sin(yaw)
    shift = -CROP_SHIFT * s * abs(s)
    return [(0.5 + shift + SCALE * (x * c + z * s), EYE_Y + SCALE * y) for x, y, z in MODEL]


CANONICAL: dict[str, tuple[tuple[float, float], ...]] = {
    pose: tuple((round(x, 4), round(y, 4)) for x, y in project(yaw)) for pose, yaw in KDEF_YAW.items()
}
FRONTAL = CANONICAL["S"]
assert len(FRONTAL) == len(LANDMARKS)


def canonical_landmarks(poses: Sequence[str] | None, count: int, device: torch.device | str | None = None
                        ) -> torch.Tensor:
    """(count, 6, 2) canonical landmarks: per pose code where given (unknown codes and "" are frontal)."""
    order = ["S"] + [k for k in CANONICAL if k != "S"]
    table = torch.tensor([CANONICAL[p] for p in order], dtype=torch.float32)
    if poses is None:
        index = torch.zeros(count, dtype=torch.int64)
    else:
        if len(poses) != count:
            raise FbenchError(f"got {len(poses)} poses for {count} samples; give one pose code per sample")
        index = torch.tensor([order.index(p) if p in order else 0 for p in (str(q).upper() for q in poses)],
                             dtype=torch.int64)
    return table[index].to(device) if device is not None else table[index]


def fill_missing(landmarks: torch.Tensor | None, poses: Sequence[str] | None = None, count: int | None = None
                 ) -> torch.Tensor:
    """Replace unknown (NaN) landmarks by canonical ones.

    ``landmarks`` may carry the uncertainty of each point (N x 6 x 4: x, y, then half-widths along x and y, as
    the decode cache stores them); it is kept as it is (non-finite or negative half-widths as 0) and the result
    has the same width.

    A sample with no known point gets the canonical landmarks of its pose (frontal without a pose). A sample
    with some known points gets the canonical template fitted to them (a similarity transform for two or more
    known points, a shift for one), so filled points stay consistent with the known ones. ``landmarks`` is
    (N, 6, 2) normalised; ``None`` means all unknown (then ``count`` or ``poses`` gives N)."""
    if landmarks is None:
        n = count if count is not None else (len(poses) if poses is not None else 0)
        return canonical_landmarks(poses, n)
    landmarks = torch.as_tensor(landmarks)
    if landmarks.dim() != 3 or landmarks.shape[1] != len(LANDMARKS) or landmarks.shape[2] not in (2, 4):
        raise FbenchError(f"landmarks must be N x {len(LANDMARKS)} x 2 ({', '.join(LANDMARKS)}; x, y in [0, 1]) or "
                          f"N x {len(LANDMARKS)} x 4 (x, y and their uncertainty), got shape "
                          f"{tuple(landmarks.shape)}")
    dtype = landmarks.dtype if landmarks.is_floating_point() else torch.float32
    if landmarks.shape[2] == 4:
        spread = torch.nan_to_num(landmarks[..., 2:].to(dtype), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0.0)
        return torch.cat([fill_missing(landmarks[..., :2], poses), spread], dim=-1)
    lm = landmarks.to(dtype)
    template = canonical_landmarks(poses, lm.shape[0], lm.device).to(dtype)
    known = torch.isfinite(lm[..., 0]) & torch.isfinite(lm[..., 1])  # (N, 6)
    w = known.to(dtype)
    safe = torch.where(known[..., None], lm, torch.zeros_like(lm))
    # Explicit sums over the six points (no reductions whose order could depend on the batch size).
    def total(t: torch.Tensor) -> torch.Tensor:
        out = t[:, 0]
        for i in range(1, t.shape[1]):
            out = out + t[:, i]
        return out

    count_known = total(w)
    denominator = torch.clamp(count_known, min=1.0)
    mean_l = total(safe * w[..., None]) / denominator[:, None]
    mean_t = total(template * w[..., None]) / denominator[:, None]
    # Complex least squares: l - mean_l = s * (t - mean_t), s = a + ib.
    tx, ty = (template - mean_t[:, None]).unbind(-1)
    lx, ly = (safe - mean_l[:, None]).unbind(-1)
    norm = total(w * (tx * tx + ty * ty))
    a = total(w * (tx * lx + ty * ly)) / torch.clamp(norm, min=1e-12)
    b = total(w * (tx * ly - ty * lx)) / torch.clamp(norm, min=1e-12)
    usable = (count_known >= 2) & (norm > 1e-6)
    a = torch.where(usable, a, torch.ones_like(a))
    b = torch.where(usable, b, torch.zeros_like(b))
    fitted_x = mean_l[:, None, 0] + a[:, None] * tx - b[:, None] * ty
    fitted_y = mean_l[:, None, 1] + b[:, None] * tx + a[:, None] * ty
    fitted = torch.stack([fitted_x, fitted_y], dim=-1)
    fitted = torch.where((count_known > 0)[:, None, None], fitted, template)
    return torch.where(known[..., None], lm, fitted)
