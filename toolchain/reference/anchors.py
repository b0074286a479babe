"""Anchor (prior) generation shared by the RetinaFace and Ultra-Light families.

Order: for each level, rows i, columns j, then the level's min sizes: the order the heads emit.
Centre ((j + 0.5) * step / W, (i + 0.5) * step / H), size (min_size / W, min_size / H), normalised.
Feature map size per level: ceil(H / step) x ceil(W / step).
"""

from __future__ import annotations

import math

import numpy as np


def feature_maps(width: int, height: int, steps) -> list[tuple[int, int]]:
    return [(math.ceil(height / s), math.ceil(width / s)) for s in steps]


def make_anchors(width: int, height: int, steps, min_sizes, clip: bool = False) -> np.ndarray:
    """Return float32 [N, 4] anchors (cx, cy, w, h), normalised to the input size."""
    out = []
    for (fh, fw), step, sizes in zip(feature_maps(width, height, steps), steps, min_sizes):
        ii, jj = np.meshgrid(np.arange(fh, dtype=np.float64), np.arange(fw, dtype=np.float64), indexing="ij")
        cx = (jj.ravel() + 0.5) * step / width
        cy = (ii.ravel() + 0.5) * step / height
        k = len(sizes)
        level = np.empty((cx.size, k, 4), dtype=np.float64)
        level[:, :, 0] = cx[:, None]
        level[:, :, 1] = cy[:, None]
        level[:, :, 2] = np.asarray(sizes, dtype=np.float64)[None, :] / width
        level[:, :, 3] = np.asarray(sizes, dtype=np.float64)[None, :] / height
        out.append(level.reshape(-1, 4))
    anchors = np.concatenate(out, axis=0)
    if clip:
        anchors = np.clip(anchors, 0.0, 1.0)
    return anchors.astype(np.float32)


def anchors_for(recipe, width: int | None = None, height: int | None = None) -> np.ndarray:
    a = recipe.anchors
    return make_anchors(width or recipe.input.width, height or recipe.input.height, a.steps, a.min_sizes, a.clip)
