"""What replaces a face on the CPU path: `blur` (box-average + smoothing, ops/cpu.py's), `pixelate` (the
blocks alone: what DeepStream's nvdsosd blur-bbox draws) or `solid` (black), through the union
mask of the faces' ellipses (toolchain.reference.masks.frame_mask, feathered edge).

Strength follows each face: the block size k is the short side of the largest face reaching into
a region / blocks_per_face (at least cpu.MIN_K), so a small face next to a large one is not
blurred with the large one's k only because they share a frame, and a large face keeps as few
blocks across as a small one. Regions that would overlap are merged (each pixel blended once).
"""

from __future__ import annotations

import math

import numpy as np

from ...reference.masks import ellipse_params, frame_mask
from .cpu import MIN_K, blurred_region

MODES = ("blur", "pixelate", "solid")


def face_k(box, blocks_per_face: float) -> int:
    side = float(min(box[2] - box[0], box[3] - box[1]))
    return max(MIN_K, int(round(side / blocks_per_face)))


def _snap(r, k: int, width: int, height: int):
    x0, y0, x1, y1 = r
    return (max(x0 // k * k, 0), max(y0 // k * k, 0), min(-(-x1 // k) * k, width), min(-(-y1 // k) * k, height))


def regions(boxes, landmarks, width: int, height: int, blocks_per_face: float, feather: float,
            max_tilt_deg: float) -> list[tuple[tuple[int, int, int, int], int]]:
    """Per merged region: ((x0, y0, x1, y1), k). A face's region is what its mask can reach plus 2k,
    snapped to its k-grid; intersecting regions merge and take the larger k."""
    out = []
    for i, box in enumerate(boxes):
        k = face_k(box, blocks_per_face)
        cx, cy, a, b, _ = ellipse_params(box, None if landmarks is None else landmarks[i], max_tilt_deg)
        reach = (1.0 + feather) * max(a, b) + 1 + 2 * k
        r = (int(math.floor(cx - reach)), int(math.floor(cy - reach)), int(math.ceil(cx + reach)),
             int(math.ceil(cy + reach)))
        out.append((_snap(r, k, width, height), k))
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                (a, ka), (b, kb) = out[i], out[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    k = max(ka, kb)
                    out[i] = (_snap((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])), k,
                                    width, height), k)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return [(r, k) for r, k in out if r[2] > r[0] and r[3] > r[1]]


def replacement(region: np.ndarray, k: int, mode: str) -> np.ndarray:
    import cv2

    if mode == "blur":
        return blurred_region(region, k)
    if mode == "pixelate":
        h, w = region.shape[:2]
        small = cv2.resize(region, (max(1, math.ceil(w / k)), max(1, math.ceil(h / k))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    if mode == "solid":
        return np.zeros_like(region)
    raise ValueError(f"unknown mode {mode!r}")


def anonymise(frame: np.ndarray, boxes, landmarks, mode: str = "blur", blocks_per_face: float = 3.0,
              feather: float = 0.15, max_tilt_deg: float = 45.0, inplace: bool = False) -> np.ndarray:
    """Replace every face of one BGR frame (boxes/landmarks in frame pixels: recall.blur_geometry's)."""
    out = frame if inplace else frame.copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return out
    h, w = frame.shape[:2]
    for (x0, y0, x1, y1), k in regions(boxes, landmarks, w, h, blocks_per_face, feather, max_tilt_deg):
        shift = np.array([x0, y0, x0, y0], dtype=np.float64)
        m = frame_mask(boxes - shift, None if landmarks is None else landmarks - shift[:2], x1 - x0, y1 - y0,
                       feather, max_tilt_deg)
        region = out[y0:y1, x0:x1]  # regions are disjoint: reading `out` reads the original pixels
        repl = replacement(region, k, mode)
        mf = m[..., None]
        out[y0:y1, x0:x1] = np.clip(region + mf * (repl.astype(np.float32) - region) + 0.5, 0, 255).astype(np.uint8)
    return out
