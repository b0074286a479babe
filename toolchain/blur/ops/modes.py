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

from ...reference.masks import ellipse_params
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
    """Per merged region: ((x0, y0, x1, y1), k). A face's region is what its mask can reach plus k (blur
    context: the box filter reads k/2, bilinear one block; ops/cpu.py's 2k made the recall-first, larger
    regions cost 1.6x the CPU time), snapped to its k-grid; intersecting regions merge, larger k wins."""
    out = []
    for i, box in enumerate(boxes):
        k = face_k(box, blocks_per_face)
        cx, cy, a, b, _ = ellipse_params(box, None if landmarks is None else landmarks[i], max_tilt_deg)
        reach = (1.0 + feather) * max(a, b) + 1 + k
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


SMOOTH_SAMPLES = 4  # per block, for the smoothing pass


def smooth_blocks(region: np.ndarray, k: int, window=None) -> np.ndarray:
    """ops/cpu.py's blur (box-average by k, bilinear up, a k-wide box filter against the bilinear kinks)
    with the box filter run on a grid of SMOOTH_SAMPLES points per block, not on every pixel: the
    smoothed image has no detail finer than a block, so evaluating it every k/4 pixels and bilinearly
    up loses nothing the audit can see, and saves two of the three full-resolution passes. `window`
    (y0, y1, x0, x1, multiples of k from the region's origin) returns only that part, upsampled
    alone: where the mask reaches, not the region's blur context."""
    import cv2

    h, w = region.shape[:2]
    y0, y1, x0, x1 = window or (0, h, 0, w)
    if k < 2 * SMOOTH_SAMPLES:
        return blurred_region(region, k)[y0:y1, x0:x1]
    cw, ch = max(1, math.ceil(w / k)), max(1, math.ceil(h / k))
    small = cv2.resize(region, (cw, ch), interpolation=cv2.INTER_AREA)
    q = SMOOTH_SAMPLES
    mid = cv2.resize(small, (cw * q, ch * q), interpolation=cv2.INTER_LINEAR)
    mid = cv2.blur(mid, (q + 1, q + 1))
    mid = mid[y0 * q // k: -(-y1 * q // k), x0 * q // k: -(-x1 * q // k)]
    return cv2.resize(mid, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)


def replacement(region: np.ndarray, k: int, mode: str, window=None) -> np.ndarray:
    """What replaces `region` (its `window` (y0, y1, x0, x1) only, when given)."""
    import cv2

    h, w = region.shape[:2]
    y0, y1, x0, x1 = window or (0, h, 0, w)
    if mode == "blur":
        return smooth_blocks(region, k, window)
    if mode == "pixelate":
        small = cv2.resize(region, (max(1, math.ceil(w / k)), max(1, math.ceil(h / k))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)[y0:y1, x0:x1]
    if mode == "solid":
        return np.zeros((y1 - y0, x1 - x0, region.shape[2]), dtype=region.dtype)
    raise ValueError(f"unknown mode {mode!r}")


def union_mask(boxes, landmarks, width: int, height: int, feather: float, max_tilt_deg: float) -> np.ndarray:
    """reference.masks.frame_mask's union of face ellipses, evaluated in float32 with separable terms
    (tests: within 1e-5 of the reference): the float64 reference was the largest cost of this stage."""
    out = np.zeros((height, width), dtype=np.float32)
    inv2f = np.float32(1.0 / (2.0 * feather))
    for i, box in enumerate(boxes):
        cx, cy, a, b, t = ellipse_params(box, None if landmarks is None else landmarks[i], max_tilt_deg)
        if a <= 0 or b <= 0:
            continue
        reach = (1.0 + feather) * max(a, b) + 1
        xa, xb = max(int(cx - reach), 0), min(int(cx + reach) + 1, width)
        ya, yb = max(int(cy - reach), 0), min(int(cy + reach) + 1, height)
        if xa >= xb or ya >= yb:
            continue
        px = (np.arange(xa, xb, dtype=np.float64) + 0.5 - cx).astype(np.float32)
        py = (np.arange(ya, yb, dtype=np.float64) + 0.5 - cy).astype(np.float32)
        c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
        u = (c / np.float32(a)) * px[None, :] + (s / np.float32(a)) * py[:, None]
        v = (-s / np.float32(b)) * px[None, :] + (c / np.float32(b)) * py[:, None]
        r = np.sqrt(u * u + v * v)
        m = np.clip(np.float32(0.5) + (np.float32(1.0) - r) * inv2f, 0.0, 1.0)
        np.maximum(out[ya:yb, xa:xb], m, out=out[ya:yb, xa:xb])
    return out


def anonymise(frame: np.ndarray, boxes, landmarks, mode: str = "blur", blocks_per_face: float = 3.0,
              feather: float = 0.15, max_tilt_deg: float = 45.0, inplace: bool = False) -> np.ndarray:
    """Replace every face of one BGR frame (boxes/landmarks in frame pixels: recall.blur_geometry's)."""
    import cv2

    out = frame if inplace else frame.copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return out
    h, w = frame.shape[:2]
    for (x0, y0, x1, y1), k in regions(boxes, landmarks, w, h, blocks_per_face, feather, max_tilt_deg):
        shift = np.array([x0, y0, x0, y0], dtype=np.float64)
        m = union_mask(boxes - shift, None if landmarks is None else landmarks - shift[:2], x1 - x0, y1 - y0,
                       feather, max_tilt_deg)
        region = out[y0:y1, x0:x1]  # regions are disjoint: reading `out` reads the original pixels
        # Replace and blend only where the mask reaches (snapped to the k-grid); the rest of the region
        # is blur context. OpenCV's per-pixel weighted blend (one C++ pass, rounded to uint8): numpy's
        # float temporaries over whole regions made this the blur stage's largest cost at 1080p.
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if not len(rows):
            continue
        rh, rw = m.shape
        win = (rows[0] // k * k, min(-(-(rows[-1] + 1) // k) * k, rh), cols[0] // k * k,
               min(-(-(cols[-1] + 1) // k) * k, rw))
        ys, xs = slice(win[0], win[1]), slice(win[2], win[3])
        repl = replacement(region, k, mode, win)
        mm = np.ascontiguousarray(m[ys, xs])
        region[ys, xs] = cv2.blendLinear(np.ascontiguousarray(repl), np.ascontiguousarray(region[ys, xs]), mm,
                                         1.0 - mm)
    return out
