"""Object metadata -> Detections, frame masks, and mask IoU against the reference contour masks."""

from __future__ import annotations

import numpy as np

from ...reference.detections import Detections
from ...reference.masks import ellipse_params, mask_iou, rasterize_mask


def to_detections(objects, frame_w: int | None = None, frame_h: int | None = None) -> Detections:
    """nvinfer objects -> Detections (frame pixels, landmarks None). Boxes are clipped to the frame
    when its size is given, as the reference's to_frame does (nvinfer leaves them unclipped)."""
    if not objects:
        return Detections(np.zeros((0, 4)), np.zeros(0), None, np.zeros(0, np.int32))
    boxes = np.array([o.box for o in objects], dtype=np.float64)
    if frame_w is not None and frame_h is not None:
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, frame_w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, frame_h)
    return Detections(boxes, np.array([o.confidence for o in objects]), None,
                      np.array([o.class_id for o in objects], dtype=np.int32))


def sample_mask(obj, x0: float, y0: float, w: int, h: int) -> np.ndarray:
    """The object's mask (which covers its box) resampled bilinearly at the pixel centres of the
    frame region (x0, y0, w, h); zero outside the box. This is how nvdsosd stretches a mask over
    rect_params when it draws or blurs it."""
    import cv2

    if obj.mask is None or obj.width <= 0 or obj.height <= 0:
        return np.zeros((h, w), np.float32)
    mh, mw = obj.mask.shape
    xs = x0 + np.arange(w, dtype=np.float64) + 0.5
    ys = y0 + np.arange(h, dtype=np.float64) + 0.5
    u = (xs - obj.left) / obj.width * mw - 0.5
    v = (ys - obj.top) / obj.height * mh - 0.5
    mx, my = np.meshgrid(u.astype(np.float32), v.astype(np.float32))
    out = cv2.remap(obj.mask.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = ((xs[None, :] >= obj.left) & (xs[None, :] < obj.left + obj.width)
              & (ys[:, None] >= obj.top) & (ys[:, None] < obj.top + obj.height))
    return np.where(inside, out, 0.0).astype(np.float32)


def frame_mask(objects, frame_w: int, frame_h: int) -> np.ndarray:
    """Union (max) of all objects' masks over the frame [frame_h, frame_w]."""
    out = np.zeros((frame_h, frame_w), np.float32)
    for o in objects:
        x0, y0 = max(int(np.floor(o.left)), 0), max(int(np.floor(o.top)), 0)
        x1, y1 = min(int(np.ceil(o.left + o.width)), frame_w), min(int(np.ceil(o.top + o.height)), frame_h)
        if x1 > x0 and y1 > y0:
            m = sample_mask(o, x0, y0, x1 - x0, y1 - y0)
            np.maximum(out[y0:y1, x0:x1], m, out=out[y0:y1, x0:x1])
    return out


def pair_mask_iou(obj, ref: Detections, ri: int, feather: float = 0.15, max_tilt_deg: float = 45.0,
                  threshold: float = 0.5) -> float:
    """IoU (at `threshold`) of the object's mask and the reference face's contour mask (with its
    landmarks), on the 1 px grid of the union of both boxes."""
    rb = ref.boxes[ri]
    x0, y0 = float(min(rb[0], obj.left)), float(min(rb[1], obj.top))
    x1, y1 = float(max(rb[2], obj.left + obj.width)), float(max(rb[3], obj.top + obj.height))
    w, h = max(int(np.ceil(x1 - x0)), 1), max(int(np.ceil(y1 - y0)), 1)
    p = ellipse_params(rb, None if ref.landmarks is None else ref.landmarks[ri], max_tilt_deg)
    ref_m = rasterize_mask(p, x0, y0, x0 + w, y0 + h, w, h, feather)
    return mask_iou(ref_m, sample_mask(obj, x0, y0, w, h), threshold)
