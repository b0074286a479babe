"""Greedy NMS, as nvinfer's cluster-mode=2 does it: sort by score, drop IoU > threshold."""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between [N,4] and [M,4] xyxy boxes (areas use w*h, no +1)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int = -1) -> np.ndarray:
    """Indices kept, best first. Ties keep the lower index (stable sort)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    ious = iou_matrix(boxes[order], boxes[order]) if len(order) else np.zeros((0, 0))
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if 0 < top_k <= len(keep):
            break
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)
