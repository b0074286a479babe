"""Face contour masks: an ellipse inscribed in the face box, turned by the eye line.

The C++ parser (plugins/) implements exactly these formulas; tests compare the two.
For a face box (x1, y1, x2, y2) and eyes (le, re):
  centre c = box centre; semi-axes a = w/2 (along the eye line), b = h/2;
  tilt t = atan2(re.y - le.y, re.x - le.x), folded into (-90, 90] degrees and clamped to +-max_tilt
  (no landmarks: t = 0). For a point p: u = cos t (px-cx) + sin t (py-cy), v = -sin t (px-cx) + cos t (py-cy),
  r = sqrt((u/a)^2 + (v/b)^2), probability = clip(0.5 + (1 - r) / (2 * feather), 0, 1).
So the ellipse edge (r = 1) is exactly probability 0.5, and the soft edge spans r in [1-f, 1+f].
"""

from __future__ import annotations

import math

import numpy as np


def ellipse_params(box, landmarks=None, max_tilt_deg: float = 45.0) -> tuple[float, float, float, float, float]:
    """(cx, cy, a, b, tilt_radians) for one face."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    a, b = (x2 - x1) / 2.0, (y2 - y1) / 2.0
    tilt = 0.0
    if landmarks is not None:
        dx = float(landmarks[1][0]) - float(landmarks[0][0])
        dy = float(landmarks[1][1]) - float(landmarks[0][1])
        if dx < 0:  # eyes reported right-to-left (profile faces): the line's angle, not its direction
            dx, dy = -dx, -dy
        if dx != 0.0 or dy != 0.0:
            tilt = math.atan2(dy, dx)
        lim = math.radians(max_tilt_deg)
        tilt = min(max(tilt, -lim), lim)
    return cx, cy, a, b, tilt


def rasterize_mask(params, x0: float, y0: float, x1: float, y1: float, out_w: int, out_h: int,
                   feather: float = 0.15) -> np.ndarray:
    """Probability mask [out_h, out_w] sampled at pixel centres of the region (x0, y0)-(x1, y1)."""
    cx, cy, a, b, tilt = params
    if a <= 0 or b <= 0 or out_w <= 0 or out_h <= 0:
        return np.zeros((max(out_h, 0), max(out_w, 0)), dtype=np.float32)
    px = x0 + (np.arange(out_w, dtype=np.float64) + 0.5) * (x1 - x0) / out_w - cx
    py = y0 + (np.arange(out_h, dtype=np.float64) + 0.5) * (y1 - y0) / out_h - cy
    c, s = math.cos(tilt), math.sin(tilt)
    u = c * px[None, :] + s * py[:, None]
    v = -s * px[None, :] + c * py[:, None]
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return np.clip(0.5 + (1.0 - r) / (2.0 * feather), 0.0, 1.0).astype(np.float32)


def box_mask(box, landmarks, resolution: int, feather: float = 0.15, max_tilt_deg: float = 45.0) -> np.ndarray:
    """The instance mask the parser emits: resolution x resolution over the face's own box."""
    p = ellipse_params(box, landmarks, max_tilt_deg)
    return rasterize_mask(p, box[0], box[1], box[2], box[3], resolution, resolution, feather)


def frame_mask(boxes, landmarks, width: int, height: int, feather: float = 0.15,
               max_tilt_deg: float = 45.0) -> np.ndarray:
    """Union (max) of all faces' probability masks over a whole frame [height, width]."""
    out = np.zeros((height, width), dtype=np.float32)
    for i, box in enumerate(boxes):
        p = ellipse_params(box, None if landmarks is None else landmarks[i], max_tilt_deg)
        # Only rasterise the face's neighbourhood: the soft edge reaches (1 + feather) radii out.
        reach = (1.0 + feather) * max(p[2], p[3]) + 1
        xa, xb = max(int(p[0] - reach), 0), min(int(p[0] + reach) + 1, width)
        ya, yb = max(int(p[1] - reach), 0), min(int(p[1] + reach) + 1, height)
        if xa >= xb or ya >= yb:
            continue
        m = rasterize_mask(p, xa, ya, xb, yb, xb - xa, yb - ya, feather)
        np.maximum(out[ya:yb, xa:xb], m, out=out[ya:yb, xa:xb])
    return out


def mask_iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    ma, mb = a >= threshold, b >= threshold
    union = np.logical_or(ma, mb).sum()
    return 1.0 if union == 0 else float(np.logical_and(ma, mb).sum() / union)
