"""The face blur on the CPU (OpenCV + numpy): box-downsample by k, bilinear back up, a k-wide box
filter (removes the bilinear kinks, which are detail too), blended through the reference contour
mask (toolchain.reference.masks.frame_mask) so the blur follows the face ellipse with a feathered
edge, not the box.

k follows the largest face of the frame (a third of its short side): every face keeps about three
blocks across, whatever the resolution, so the blur is as strong at 1080p as at 270p.

Only the neighbourhood of each face is touched (the mask is exactly zero beyond (1 + feather) radii),
so the cost follows the faces' area, not the frame's: what makes 1080p affordable on two cores.
The torch path (ops/torch.py) computes the same blur: the same k, the same sample grid.
"""

from __future__ import annotations

import math

import numpy as np

from ...reference.masks import ellipse_params, frame_mask

BLOCKS_PER_FACE = 3.0
MIN_K = 4


def blur_factor(boxes) -> int:
    """Downsampling factor k for one frame: the largest face's short side / 3, at least 4 px."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(b):
        return MIN_K
    side = float(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).max())
    return max(MIN_K, int(round(side / BLOCKS_PER_FACE)))


def face_rois(boxes, landmarks, width: int, height: int, k: int, feather: float,
              max_tilt_deg: float) -> list[tuple[int, int, int, int]]:
    """Per face: the region the mask can reach, grown by 2k and snapped to the k-grid (x0, y0, x1, y1)."""
    rois = []
    for i, box in enumerate(boxes):
        cx, cy, a, b, _ = ellipse_params(box, None if landmarks is None else landmarks[i], max_tilt_deg)
        reach = (1.0 + feather) * max(a, b) + 1 + 2 * k
        x0 = max(int(math.floor((cx - reach) / k)) * k, 0)
        y0 = max(int(math.floor((cy - reach) / k)) * k, 0)
        x1 = min(int(math.ceil((cx + reach) / k)) * k, width)
        y1 = min(int(math.ceil((cy + reach) / k)) * k, height)
        if x1 > x0 and y1 > y0:
            rois.append((x0, y0, x1, y1))
    return merge_overlapping(rois)


def merge_overlapping(rois: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Merge intersecting regions until none intersect: each pixel is then blended exactly once, from
    one blurred region (two regions' blurs differ near their borders: a seam would be new detail)."""
    rois = list(rois)
    merged = True
    while merged:
        merged = False
        for i in range(len(rois)):
            for j in range(i + 1, len(rois)):
                a, b = rois[i], rois[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    rois[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del rois[j]
                    merged = True
                    break
            if merged:
                break
    return rois


def blurred_region(region: np.ndarray, k: int) -> np.ndarray:
    import cv2

    h, w = region.shape[:2]
    small = cv2.resize(region, (max(1, math.ceil(w / k)), max(1, math.ceil(h / k))), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.blur(up, (k | 1, k | 1))


def blur_faces(frame: np.ndarray, boxes, landmarks, feather: float = 0.15, max_tilt_deg: float = 45.0,
               k: int | None = None, inplace: bool = False) -> np.ndarray:
    """Blur every face of one BGR frame (frame pixels) through its contour mask."""
    out = frame if inplace else frame.copy()
    if boxes is None or len(boxes) == 0:
        return out
    src = frame.copy() if inplace else frame  # overlapping regions must read the sharp original
    h, w = frame.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    k = k or blur_factor(boxes)
    lms = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    for x0, y0, x1, y1 in face_rois(boxes, lms, w, h, k, feather, max_tilt_deg):
        # The reference union mask over this region: all faces, shifted into region coordinates.
        shift = np.array([x0, y0, x0, y0], dtype=np.float64)
        m = frame_mask(boxes - shift, None if lms is None else lms - shift[:2], x1 - x0, y1 - y0,
                       feather, max_tilt_deg)
        region = src[y0:y1, x0:x1]
        blurred = blurred_region(region, k)
        mf = m[..., None]
        out[y0:y1, x0:x1] = np.clip(region + mf * (blurred.astype(np.float32) - region) + 0.5, 0, 255).astype(np.uint8)
    return out


def naive_blur(frame: np.ndarray, boxes, landmarks, feather: float = 0.15, max_tilt_deg: float = 45.0
               ) -> np.ndarray:
    """What a proof-of-concept script does: blur the whole frame, build a full-frame mask, blend every
    pixel in float. Same blur and mask as blur_faces (so the bench compares architectures, not blurs)."""
    if boxes is None or len(boxes) == 0:
        return frame.copy()
    h, w = frame.shape[:2]
    blurred = blurred_region(frame, blur_factor(boxes))
    m = frame_mask(boxes, landmarks, w, h, feather, max_tilt_deg)[..., None]
    return (frame * (1.0 - m) + blurred * m + 0.5).astype(np.uint8)
