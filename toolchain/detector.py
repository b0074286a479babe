"""The one detector loop: frames in, faces out (preprocess -> runner -> reference post-processing ->
frame coordinates).

Used by `fbtool detect`, validate's runner candidates, the calibrate gate, bench's naive loop and the
blur proof. Any runner fits (torch, onnxruntime, TensorRT); outputs may be raw heads (decoded here by
the reference) or graph-decoded. Pass a list as `raw` to keep every frame's outputs (for tensor-level
comparison).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .recipe import Recipe
from .reference.detections import Detections, postprocess, split_batch
from .reference.preprocess import preprocess_batch, to_frame


def detect_batch(frames: list[np.ndarray], recipe: Recipe, runner, score_threshold: float | None = None,
                 raw: list[dict[str, np.ndarray]] | None = None) -> list[Detections]:
    x, boxes = preprocess_batch(frames, recipe)
    outputs = runner.infer({recipe.input.name: x})
    dets = []
    for out, lb in zip(split_batch(outputs), boxes):
        d = postprocess(out, recipe, score_threshold=score_threshold)
        dets.append(to_frame(d, lb))
        if raw is not None:
            raw.append(out)
    return dets


def detect_frames(frames: Iterable[np.ndarray], recipe: Recipe, runner, batch: int = 4,
                  score_threshold: float | None = None, raw: list[dict[str, np.ndarray]] | None = None
                  ) -> list[Detections]:
    out: list[Detections] = []
    chunk: list[np.ndarray] = []
    for f in frames:
        chunk.append(f)
        if len(chunk) == batch:
            out += detect_batch(chunk, recipe, runner, score_threshold, raw)
            chunk = []
    if chunk:
        out += detect_batch(chunk, recipe, runner, score_threshold, raw)
    return out


def stack_raw(raw: list[dict[str, np.ndarray]] | None) -> dict[str, np.ndarray] | None:
    """Per-frame outputs -> {name: [N, ...]} (None for none)."""
    if not raw:
        return None
    return {k: np.stack([r[k] for r in raw]) for k in raw[0]}
