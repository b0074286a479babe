"""Detection-level comparison of a candidate against the reference (PyTorch fp32) detections.

The one comparator: export and surgery parity (output_errors), calibrate's accuracy gate, the parser
tests, the blur proof's detector and `fbtool validate`; toolchain.compare.policy says what passes.
Matching: greedy, candidates by descending score, each to the unmatched reference face of highest
IoU; a match needs IoU >= iou_threshold (0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..reference.masks import ellipse_params, mask_iou, rasterize_mask
from ..reference.nms import iou_matrix


@dataclass
class FrameMatch:
    tp: int
    fp: int
    fn: int
    ious: list[float] = field(default_factory=list)
    score_deltas: list[float] = field(default_factory=list)
    landmark_errors: list[float] = field(default_factory=list)  # mean point distance per matched face, px
    box_errors: list[float] = field(default_factory=list)  # max corner distance per matched face, px
    mask_ious: list[float] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (reference index, candidate index)


def match(ref, cand, iou_threshold: float = 0.5, mask_feather: float = 0.15, max_tilt_deg: float = 45.0,
          with_masks: bool = True) -> FrameMatch:
    if len(ref) == 0 or len(cand) == 0:
        return FrameMatch(0, len(cand), len(ref))
    ious = iou_matrix(cand.boxes, ref.boxes)
    used = np.zeros(len(ref), dtype=bool)
    m = FrameMatch(0, 0, 0)
    for ci in np.argsort(-cand.scores, kind="stable"):
        row = np.where(used, -1.0, ious[ci])
        ri = int(np.argmax(row))
        if row[ri] < iou_threshold:
            m.fp += 1
            continue
        used[ri] = True
        m.tp += 1
        m.pairs.append((ri, int(ci)))
        m.ious.append(float(row[ri]))
        m.score_deltas.append(float(abs(cand.scores[ci] - ref.scores[ri])))
        m.box_errors.append(float(np.abs(cand.boxes[ci] - ref.boxes[ri]).max()))
        if ref.landmarks is not None and cand.landmarks is not None:
            d = np.linalg.norm(cand.landmarks[ci].astype(np.float64) - ref.landmarks[ri], axis=-1)
            m.landmark_errors.append(float(d.mean()))
        if with_masks:
            m.mask_ious.append(_pair_mask_iou(ref, ri, cand, ci, mask_feather, max_tilt_deg))
    m.fn = int((~used).sum())
    return m


def _pair_mask_iou(ref, ri, cand, ci, feather, tilt) -> float:
    """IoU of the two faces' contour masks, rasterised on the union of their boxes (1 px grid)."""
    x0 = float(min(ref.boxes[ri, 0], cand.boxes[ci, 0]))
    y0 = float(min(ref.boxes[ri, 1], cand.boxes[ci, 1]))
    x1 = float(max(ref.boxes[ri, 2], cand.boxes[ci, 2]))
    y1 = float(max(ref.boxes[ri, 3], cand.boxes[ci, 3]))
    w, h = max(int(np.ceil(x1 - x0)), 1), max(int(np.ceil(y1 - y0)), 1)
    pa = ellipse_params(ref.boxes[ri], None if ref.landmarks is None else ref.landmarks[ri], tilt)
    pb = ellipse_params(cand.boxes[ci], None if cand.landmarks is None else cand.landmarks[ci], tilt)
    return mask_iou(rasterize_mask(pa, x0, y0, x0 + w, y0 + h, w, h, feather),
                    rasterize_mask(pb, x0, y0, x0 + w, y0 + h, w, h, feather))


@dataclass
class Summary:
    frames: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    mean_iou: float
    min_iou: float
    max_score_delta: float
    mean_landmark_px: float
    max_landmark_px: float
    max_box_px: float
    mean_mask_iou: float
    min_mask_iou: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(matches: list[FrameMatch]) -> Summary:
    tp = sum(m.tp for m in matches)
    fp = sum(m.fp for m in matches)
    fn = sum(m.fn for m in matches)
    # No faces on either side is perfect agreement, not 0/0.
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    def cat(attr):
        return np.asarray([v for m in matches for v in getattr(m, attr)], dtype=np.float64)

    ious, sd, lm, be, mi = cat("ious"), cat("score_deltas"), cat("landmark_errors"), cat("box_errors"), cat("mask_ious")

    def stat(a, fn, empty):
        return float(fn(a)) if a.size else empty

    return Summary(len(matches), tp, fp, fn, precision, recall, f1,
                   stat(ious, np.mean, 1.0), stat(ious, np.min, 1.0), stat(sd, np.max, 0.0),
                   stat(lm, np.mean, 0.0), stat(lm, np.max, 0.0), stat(be, np.max, 0.0),
                   stat(mi, np.mean, 1.0), stat(mi, np.min, 1.0))


def compare_detections(refs, cands, iou_threshold: float = 0.5, **kw) -> tuple[Summary, list[FrameMatch]]:
    if len(refs) != len(cands):
        raise ValueError(f"{len(refs)} reference frames but {len(cands)} candidate frames")
    matches = [match(r, c, iou_threshold, **kw) for r, c in zip(refs, cands)]
    return summarize(matches), matches


def tensor_stats(ref: np.ndarray, cand: np.ndarray) -> dict:
    """Max abs / rel error and cosine similarity of two tensors of the same shape.

    `range` is the reference's value range and `of_range` the max abs error as a fraction of it: the
    figure a reader can judge. `max_rel` divides by each element, so it explodes on near-zero values
    (8.4 beside a cosine of 1.000000); it stays in the JSON but is not shown to users."""
    r = ref.astype(np.float64).ravel()
    c = cand.astype(np.float64).ravel()
    d = np.abs(c - r)
    denom = np.linalg.norm(r) * np.linalg.norm(c)
    span = float(r.max() - r.min()) if r.size else 0.0
    max_abs = float(d.max()) if d.size else 0.0
    return {"max_abs": max_abs,
            "range": span,
            "of_range": max_abs / span if span > 0 else (0.0 if max_abs == 0 else float("inf")),
            "max_rel": float((d / np.maximum(np.abs(r), 1e-6)).max()) if d.size else 0.0,
            "mean_abs": float(d.mean()) if d.size else 0.0,
            "cosine": float(r @ c / denom) if denom > 0 else 1.0,
            "finite": bool(np.isfinite(c).all())}


def output_errors(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], what: str = "the candidate"
                  ) -> dict[str, dict]:
    """tensor_stats for every output of `ref`, which `cand` must have with the same shape (the
    parity checks of export and surgery: the candidate must equal its source)."""
    from ..errors import FbtoolError

    out = {}
    for name, r in ref.items():
        if name not in cand:
            raise FbtoolError(f"{what} has no output {name!r}", f"it has {sorted(cand)}")
        c = np.asarray(cand[name])
        if c.shape != np.shape(r):
            raise FbtoolError(f"output {name!r} of {what} has shape {c.shape}, the reference's {np.shape(r)}")
        out[name] = tensor_stats(np.asarray(r), c)
    return out


def compare_landmarks(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], scores: str, landmarks: str,
                      presence: float = 0.5, side: int = 192) -> dict:
    """A landmark model's candidate against its reference on the same crops (FaceMesh: presence [N, 1],
    landmarks [N, 468, 3] in crop pixels). Landmark error in crop pixels (x, y), the face-oval mask IoU
    (reference.contour.FACE_OVAL rasterised over the side x side crop), the presence decision."""
    from ..reference.contour import FACE_OVAL, polygon_frame_mask

    rp, cp = np.asarray(ref[scores], np.float64).reshape(-1), np.asarray(cand[scores], np.float64).reshape(-1)
    rl = np.asarray(ref[landmarks], np.float64)[..., :2]
    cl = np.asarray(cand[landmarks], np.float64)[..., :2]
    err = np.linalg.norm(rl - cl, axis=-1)  # [N, 468]
    ious = []
    for a, b in zip(rl, cl):
        ma, mb = polygon_frame_mask(a[list(FACE_OVAL)], side, side), polygon_frame_mask(b[list(FACE_OVAL)], side, side)
        union = np.logical_or(ma, mb).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(ma, mb).sum() / union))
    finite = bool(np.isfinite(cl).all() and np.isfinite(cp).all())
    n = len(rp)
    return {"crops": n, "finite": finite,
            "mean_landmark_px": float(err.mean()) if n else 0.0, "p99_landmark_px": float(np.percentile(err, 99)) if n else 0.0,
            "max_landmark_px": float(err.max()) if n else 0.0,
            "mean_oval_iou": float(np.mean(ious)) if n else 1.0, "min_oval_iou": float(np.min(ious)) if n else 1.0,
            "max_presence_delta": float(np.abs(rp - cp).max()) if n else 0.0,
            "presence_agreement": float(np.mean((rp >= presence) == (cp >= presence))) if n else 1.0}
