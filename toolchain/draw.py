"""Overlays: boxes, landmarks and contour masks drawn on a frame (what `fbtool detect` writes)."""

from __future__ import annotations

import numpy as np

from .reference.masks import frame_mask

COLORS = [(0, 255, 0), (0, 0, 255), (255, 0, 0), (0, 255, 255), (255, 0, 255)]


def draw_detections(frame: np.ndarray, dets, recipe=None, color=(0, 255, 0), mask: bool = True) -> np.ndarray:
    import cv2

    img = frame.copy()
    if mask and len(dets):
        feather = recipe.mask.feather if recipe else 0.15
        tilt = recipe.mask.max_tilt_deg if recipe else 45.0
        m = frame_mask(dets.boxes, dets.landmarks, img.shape[1], img.shape[0], feather, tilt)
        tint = np.zeros_like(img)
        tint[:] = color
        alpha = (0.35 * m)[..., None]
        img = (img * (1 - alpha) + tint * alpha).astype(np.uint8)
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(round(v)) for v in dets.boxes[i])
        cv2.rectangle(img, (x1, y1), (x2, y2), color, 1)
        cv2.putText(img, f"{dets.scores[i]:.2f}", (x1, max(y1 - 3, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1)
        if dets.landmarks is not None:
            for k, (x, y) in enumerate(dets.landmarks[i]):
                cv2.circle(img, (int(round(x)), int(round(y))), 1, COLORS[k % len(COLORS)], -1)
    return img
