"""SSD/RetinaFace decode, in network-input pixels.

centre = a_c + d_xy * v0 * a_wh; size = a_wh * exp(d_wh * v1); landmark k = a_c + d_k * v0 * a_wh.
"""

from __future__ import annotations

import numpy as np


def decode_boxes(loc: np.ndarray, anchors: np.ndarray, variance, width: int, height: int) -> np.ndarray:
    """loc [N, 4] deltas -> [N, 4] (x1, y1, x2, y2) in pixels (float32, computed in float64)."""
    loc = loc.astype(np.float64)
    a = anchors.astype(np.float64)
    c = a[:, :2] + loc[:, :2] * variance[0] * a[:, 2:]
    wh = a[:, 2:] * np.exp(loc[:, 2:] * variance[1])
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    boxes *= np.array([width, height, width, height], dtype=np.float64)
    return boxes.astype(np.float32)


def decode_landmarks(ldm: np.ndarray, anchors: np.ndarray, variance, width: int, height: int) -> np.ndarray:
    """ldm [N, 2K] deltas -> [N, K, 2] points in pixels."""
    a = anchors.astype(np.float64)
    d = ldm.astype(np.float64).reshape(ldm.shape[0], ldm.shape[-1] // 2, 2)  # explicit K: N may be 0
    pts = a[:, None, :2] + d * variance[0] * a[:, None, 2:]
    pts *= np.array([width, height], dtype=np.float64)
    return pts.astype(np.float32)
