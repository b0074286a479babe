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


def blur_box(obj) -> tuple[int, int, int, int]:
    """The integer box nvdsosd blurs (nvll_osd_int.cpp, nvll_osd_blur_rectangles_gpu: int x1 = left,
    x2 = width + x1, truncated)."""
    x1, y1 = int(np.float32(obj.left)), int(np.float32(obj.top))
    return x1, y1, int(np.float32(obj.width) + np.float32(x1)), int(np.float32(obj.height) + np.float32(y1))


def sample_mask(obj, x0: float, y0: float, w: int, h: int, mode: str = "cells") -> np.ndarray:
    """The object's mask over the frame region (x0, y0, w, h), zero outside its box.

    mode="blur" (the default, what validate judges): the area DeepStream 9.x's nvdsosd blurs
    (cuosd_kernel.cu, render_blur_kernel): on the integer box, pixel (fx, fy) falls in cell
    sx = int((fx - x1) / boxwidth * 32) of a 32 x 32 grid, reads the mask at
    int(sx / 32 * mask_width), and is blurred unless that value is exactly 0 (no threshold). A box
    narrower or lower than 3 px is not blurred (cuosd_draw_boxblur). 1.0 = blurred.
    mode="cells" (what validate judges): the same 32 x 32 cell lookup on the float box, at pixel
    centres, the mask value itself (so `>= segmentation-threshold` is the judged area; with the
    fbtool parser, which writes 0 outside the contour, these are the cells nvdsosd blurs).
    mode="bilinear": the mask stretched bilinearly over the float box (how it is drawn)."""
    import cv2

    if obj.mask is None or obj.width <= 0 or obj.height <= 0:
        return np.zeros((h, w), np.float32)
    mh, mw = obj.mask.shape
    if mode == "blur":
        bx1, by1, bx2, by2 = blur_box(obj)
        bw, bh = bx2 - bx1, by2 - by1
        if bw < 3 or bh < 3:
            return np.zeros((h, w), np.float32)

        def cells(first: float, n: int, start: int, size: int, seg: int):
            rel = (np.floor(first) + np.arange(n)).astype(np.int64) - start
            cov = 32 * ((size + 31) // 32)
            s = np.floor(rel.astype(np.float32) / np.float32(size) * np.float32(32)).astype(np.int64)
            ok = (rel >= 0) & (rel < cov) & (s < 32)
            return ok, np.clip((s.astype(np.float32) / np.float32(32) * np.float32(seg)).astype(np.int64), 0, seg - 1)

        okx, cx = cells(x0, w, bx1, bw, mw)
        oky, cy = cells(y0, h, by1, bh, mh)
        vals = obj.mask[np.ix_(cy, cx)] != 0
        return (vals & oky[:, None] & okx[None, :]).astype(np.float32)
    xs = x0 + np.arange(w, dtype=np.float64) + 0.5
    ys = y0 + np.arange(h, dtype=np.float64) + 0.5
    inside = ((xs[None, :] >= obj.left) & (xs[None, :] < obj.left + obj.width)
              & (ys[:, None] >= obj.top) & (ys[:, None] < obj.top + obj.height))
    if mode == "cells":
        gx = np.clip(np.floor((xs - obj.left) / obj.width * 32), 0, 31)
        gy = np.clip(np.floor((ys - obj.top) / obj.height * 32), 0, 31)
        cx = np.floor(gx / 32 * mw).astype(np.int64)
        cy = np.floor(gy / 32 * mh).astype(np.int64)
        return np.where(inside, obj.mask[np.ix_(cy, cx)], 0.0).astype(np.float32)
    u = (xs - obj.left) / obj.width * mw - 0.5
    v = (ys - obj.top) / obj.height * mh - 0.5
    mx, my = np.meshgrid(u.astype(np.float32), v.astype(np.float32))
    out = cv2.remap(obj.mask.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
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
    """IoU (at `threshold`) of the area DeepStream blurs for the object (sample_mask, mode "blur") and
    the reference face's contour mask (with its landmarks), on the frame's 1 px grid over both boxes.
    The contour is the ellipse of the face's whole box (`full_boxes`), cut at the frame's edge."""
    rb = ref.boxes[ri]
    # the frame's own pixel grid (integer origin), where nvdsosd blurs
    x0, y0 = float(np.floor(min(rb[0], obj.left))), float(np.floor(min(rb[1], obj.top)))
    x1, y1 = float(max(rb[2], obj.left + obj.width)), float(max(rb[3], obj.top + obj.height))
    w, h = max(int(np.ceil(x1 - x0)), 1), max(int(np.ceil(y1 - y0)), 1)
    p = ellipse_params(ref.contour_box(ri), None if ref.landmarks is None else ref.landmarks[ri], max_tilt_deg)
    ref_m = rasterize_mask(p, x0, y0, x0 + w, y0 + h, w, h, feather)
    return mask_iou(ref_m, sample_mask(obj, x0, y0, w, h), threshold)
