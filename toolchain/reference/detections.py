"""Detections and the reference post-processing chain (raw heads -> faces)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anchors import anchors_for
from .decode import decode_boxes, decode_landmarks
from .masks import box_mask
from .nms import nms


@dataclass
class Detections:
    """Faces of one image. Coordinates in whichever space the producer states (network or frame px)."""

    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2
    scores: np.ndarray  # [N] float32
    landmarks: np.ndarray | None = None  # [N, K, 2] float32
    classes: np.ndarray | None = None  # [N] int32, 0 = face
    # [N, 4] the boxes before to_frame clipped them to the frame (None: not clipped). A face cut by a
    # frame edge keeps its whole contour: its mask is the ellipse of this box, cut at the edge.
    full_boxes: np.ndarray | None = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.classes is None:
            self.classes = np.zeros(len(self.scores), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, with_landmarks: bool = True, k: int = 5) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, k, 2), np.float32) if with_landmarks else None)

    def take(self, idx) -> Detections:
        idx = np.asarray(idx, dtype=np.int64)
        return Detections(self.boxes[idx], self.scores[idx],
                          None if self.landmarks is None else self.landmarks[idx], self.classes[idx],
                          None if self.full_boxes is None else self.full_boxes[idx])

    def contour_box(self, i: int) -> np.ndarray:
        """The box whose inscribed ellipse is face i's contour (the unclipped one where known)."""
        return self.boxes[i] if self.full_boxes is None else self.full_boxes[i]

    def masks(self, resolution: int, feather: float = 0.15, max_tilt_deg: float = 45.0) -> np.ndarray:
        """[N, R, R] per-face probability masks over each face's own box (what the parser emits)."""
        return np.stack([
            box_mask(b, None if self.landmarks is None else self.landmarks[i], resolution, feather, max_tilt_deg)
            for i, b in enumerate(self.boxes)
        ]) if len(self) else np.zeros((0, resolution, resolution), np.float32)

    def to_json(self) -> list[dict]:
        out = []
        for i in range(len(self)):
            d = {"box": [round(float(v), 2) for v in self.boxes[i]], "score": round(float(self.scores[i]), 4)}
            if self.landmarks is not None:
                d["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks[i]]
            out.append(d)
        return out


DECODED = {"boxes": "det_boxes", "scores": "det_scores", "landmarks": "det_landmarks"}


def decoded_candidates(outputs: dict[str, np.ndarray], score_threshold: float) -> Detections:
    """Graph-decoded outputs (surgery's decode-in-graph: pixels already) above the threshold."""
    scores = np.asarray(outputs[DECODED["scores"]], dtype=np.float32).reshape(-1)
    keep = np.nonzero(scores > score_threshold)[0]
    boxes = np.asarray(outputs[DECODED["boxes"]], dtype=np.float32).reshape(-1, 4)[keep]
    lms = None
    if DECODED["landmarks"] in outputs:
        lm = np.asarray(outputs[DECODED["landmarks"]], dtype=np.float32)
        lms = lm.reshape(scores.shape[0], -1, 2)[keep]
    return Detections(boxes, scores[keep], lms)


def candidates(outputs: dict[str, np.ndarray], recipe, width: int, height: int, score_threshold: float):
    """Decode one image's raw heads (or read decoded ones) and keep those above the threshold (before NMS)."""
    if DECODED["boxes"] in outputs:
        return decoded_candidates(outputs, score_threshold)
    o = recipe.outputs
    loc = np.asarray(outputs[o.boxes]).reshape(-1, 4)
    probs = np.asarray(outputs[o.scores])
    probs = probs.reshape(loc.shape[0], -1)
    scores = probs[:, 1] if probs.shape[1] > 1 else probs[:, 0]
    keep = np.nonzero(scores > score_threshold)[0]
    anchors = anchors_for(recipe, width, height)
    if anchors.shape[0] != loc.shape[0]:
        raise ValueError(f"{loc.shape[0]} box rows but {anchors.shape[0]} anchors for {width}x{height}")
    var = recipe.anchors.variance
    boxes = decode_boxes(loc[keep], anchors[keep], var, width, height)
    lms = None
    if recipe.has_landmarks and o.landmarks in outputs:
        ldm = np.asarray(outputs[o.landmarks]).reshape(loc.shape[0], -1)
        lms = decode_landmarks(ldm[keep], anchors[keep], var, width, height)
    return Detections(boxes, scores[keep], lms)


def postprocess(outputs: dict[str, np.ndarray], recipe, width: int | None = None, height: int | None = None,
                score_threshold: float | None = None) -> Detections:
    """The reference: decode, threshold, pre-NMS top-k, NMS, top-k. Network-input pixels."""
    width = width or recipe.input.width
    height = height or recipe.input.height
    t = recipe.thresholds
    thr = t.score if score_threshold is None else score_threshold
    return select(candidates(outputs, recipe, width, height, thr), t)


def select(cand: Detections, t) -> Detections:
    """Candidates -> faces: pre-NMS top-k (stable: ties keep the lower index), NMS, top-k.
    `t`: the recipe's thresholds. The one selection chain (the parser's reference uses it too)."""
    if len(cand) > t.pre_nms_top_k:
        cand = cand.take(np.argsort(-cand.scores, kind="stable")[: t.pre_nms_top_k])
    return cand.take(nms(cand.boxes, cand.scores, t.nms_iou, t.top_k))


def split_batch(outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """{name: [B, ...]} -> [{name: [...]}] * B."""
    b = next(iter(outputs.values())).shape[0]
    return [{k: v[i] for k, v in outputs.items()} for i in range(b)]
