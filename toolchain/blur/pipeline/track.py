"""Temporal hold for the blur job: faces become tracks, and a track is blurred where the detector
missed it.

The job is offline, so a frame is blurred only once the next `max_gap` frames have been seen:
- a track missed for up to `max_gap` frames and found again is blurred in the gap, on the line
  between its two detections (filled backwards from the later detection and forwards from the
  earlier one);
- a new track is also blurred in the `max_gap` frames before its first detection, at that box (a face
  first detected at t + 2 is blurred at t and t + 1);
- after its last detection a track stays blurred for `hold` frames at its predicted position
  (constant velocity), its box grown a little per frame as the prediction gets less certain;
- a scene cut (CUT_DIFF) ends every track: no hold into the next shot, no lead-in into the last.

Why a small IoU tracker and not a package's SORT/ByteTrack (README, dependencies): those are online
trackers; they report a track only while it is matched (ByteTrack also withholds new tracks until
confirmed), never fill a gap backwards, and would add a dependency for the one part that is simple
here (matching a handful of faces per frame by IoU). What the blur needs, history per track,
backward fill and the hold, is this module either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...reference.nms import iou_matrix

DETECTED, GAP, LEAD, HOLD = "detected", "gap", "lead", "hold"
HOLD_GROW_PER_FRAME, HOLD_GROW_MAX = 0.05, 1.5  # a held box grows 5% a frame (position less certain)
# A scene cut ends every track: a held box would land on another scene, a lead-in reach back into one.
# Mean absolute difference of a 64x36 grey sample grid between consecutive frames, 0-255: measured at
# most 12.4 inside the shared clips (a person walking close to the camera in the MP4), 51-78 where
# the bench's frames jump from one clip to the next.
CUT_DIFF = 30.0
VELOCITY_SMOOTHING = 0.5


@dataclass
class Face:
    """One face blurred in one frame: a detection, or a box the tracker holds there."""

    track: int
    box: np.ndarray  # [4] x1, y1, x2, y2, frame pixels
    kind: str  # DETECTED, GAP (between two detections), LEAD (before the first), HOLD (after the last)
    score: float = 0.0  # the detection's score; held faces keep their track's last score
    landmarks: np.ndarray | None = None  # detections only
    oval: np.ndarray | None = None  # --contour facemesh: the face oval blurred instead of the ellipse ...
    oval_alone: bool = True  # ... or (False: the face did not look frontal) together with it

    def to_json(self) -> dict:
        d = {"track": self.track, "box": [round(float(v), 2) for v in self.box], "kind": self.kind,
             "score": round(float(self.score), 4)}
        if self.oval is not None:
            d["mask"] = "oval" if self.oval_alone else "oval+ellipse"
        return d


@dataclass
class _Track:
    id: int
    first: int
    last: int
    box: np.ndarray
    score: float
    velocity: np.ndarray

    def predict(self, index: int) -> np.ndarray:
        return self.box + self.velocity * (index - self.last)


def _grown(box: np.ndarray, factor: float) -> np.ndarray:
    c = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) / 2 * factor
    return np.concatenate([c - half, c + half])


def _match(pred: np.ndarray, boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Greedy matching, best pair first: IoU >= min_iou, or (a fast or small face) the detection's centre
    inside the predicted box with a size within 2x. Few faces per frame: greedy is enough."""
    if not len(pred) or not len(boxes):
        return []
    iou = iou_matrix(pred, boxes)
    pc, bc = (pred[:, :2] + pred[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2
    pw, bw = pred[:, 2:] - pred[:, :2], boxes[:, 2:] - boxes[:, :2]
    inside = np.all(np.abs(bc[None] - pc[:, None]) <= pw[:, None] / 2, axis=2)
    ratio = np.sqrt(np.prod(np.maximum(bw, 1e-6), axis=1))[None] / np.sqrt(np.prod(np.maximum(pw, 1e-6), axis=1))[:, None]
    near = inside & (ratio >= 0.5) & (ratio <= 2.0)
    score = np.where(iou >= min_iou, iou, np.where(near, 1e-3, -1.0))
    pairs = []
    while True:
        i, j = np.unravel_index(np.argmax(score), score.shape)
        if score[i, j] < 0:
            return pairs
        pairs.append((int(i), int(j)))
        score[i, :] = -1.0
        score[:, j] = -1.0


class Tracker:
    """Feed frames in order with `push`; take finished frames (no later detection can change them) with
    `ready`, the rest with `flush` at the end. Each finished frame is (index, [Face])."""

    def __init__(self, max_gap: int, hold: int, min_iou: float = 0.2):
        self.max_gap, self.hold, self.min_iou = max_gap, hold, min_iou
        self.tracks: list[_Track] = []
        self.pending: dict[int, dict[int, Face]] = {}  # frame index -> track id -> face (not yet final)
        self.order: list[int] = []
        self.next_id = 0
        self.newest = -1
        self.shot_start = 0  # first frame after the last scene cut

    def cut(self, index: int) -> None:
        """A scene cut before frame `index`: tracks end here (no hold after, no lead-in before)."""
        self.tracks = []
        self.shot_start = index

    def push(self, index: int, boxes, scores, landmarks=None) -> None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self.pending[index] = {}
        self.order.append(index)
        self.newest = index
        alive = max(self.hold, self.max_gap) + 1
        self.tracks = [t for t in self.tracks if index - t.last <= alive]
        pred = np.stack([t.predict(index) for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        pairs = _match(pred, boxes, self.min_iou)
        matched_t = {i for i, _ in pairs}
        matched_d = {j for _, j in pairs}
        for i, j in pairs:
            t = self.tracks[i]
            gap = index - t.last - 1
            if 0 < gap <= self.max_gap:  # blur the gap on the line between the two detections
                for g in range(1, gap + 1):
                    f = t.last + g
                    if f in self.pending:
                        w = g / (gap + 1)
                        self.pending[f][t.id] = Face(t.id, (1 - w) * t.box + w * boxes[j], GAP, t.score)
            step = (boxes[j] - t.box) / (index - t.last)
            t.velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * t.velocity
            t.box, t.last, t.score = boxes[j].copy(), index, float(scores[j])
            self._detected(index, t.id, boxes[j], scores[j], landmarks, j)
        for i, t in enumerate(self.tracks):
            misses = index - t.last
            if i not in matched_t and misses <= self.hold:
                grow = min(1.0 + HOLD_GROW_PER_FRAME * misses, HOLD_GROW_MAX)
                self.pending[index][t.id] = Face(t.id, _grown(t.predict(index), grow), HOLD, t.score)
        for j in range(len(boxes)):
            if j in matched_d:
                continue
            t = _Track(self.next_id, index, index, boxes[j].copy(), float(scores[j]), np.zeros(4))
            self.next_id += 1
            self.tracks.append(t)
            for f in range(max(index - self.max_gap, self.shot_start), index):  # before the first detection
                if f in self.pending and t.id not in self.pending[f]:
                    self.pending[f][t.id] = Face(t.id, boxes[j].copy(), LEAD, t.score)
            self._detected(index, t.id, boxes[j], scores[j], landmarks, j)

    def _detected(self, index, tid, box, score, landmarks, j) -> None:
        lm = None if landmarks is None else np.asarray(landmarks[j], dtype=np.float64)
        self.pending[index][tid] = Face(tid, np.asarray(box, dtype=np.float64).copy(), DETECTED, float(score), lm)

    def _take(self, upto: int) -> list[tuple[int, list[Face]]]:
        out = []
        while self.order and self.order[0] <= upto:
            f = self.order.pop(0)
            out.append((f, sorted(self.pending.pop(f).values(), key=lambda x: x.track)))
        return out

    def ready(self) -> list[tuple[int, list[Face]]]:
        """Frames no later detection can change any more: older than the newest by more than max_gap."""
        return self._take(self.newest - self.max_gap - 1)

    def flush(self) -> list[tuple[int, list[Face]]]:
        return self._take(self.newest)


def _signature(frame: np.ndarray) -> np.ndarray:
    """A 64x36 grey sample grid of the frame (strided reads: microseconds at 1080p)."""
    h, w = frame.shape[:2]
    return np.asarray(frame[h // 72::max(h // 36, 1), w // 128::max(w // 64, 1)], dtype=np.float32).mean(axis=2)


def track_stage(spec, on_faces: Callable | None = None) -> Callable:
    """Stage 'track' (host engines): holds batches until their frames are final, then hands them on with
    `b.extra['faces']` (per frame, the [Face] to blur). Batches keep their frames and order."""
    def fn(batches):
        tr = Tracker(spec.max_gap, spec.hold, spec.track_iou)
        waiting: list = []  # batches whose frames are not final yet
        final: dict[int, list[Face]] = {}

        def finished(b) -> bool:
            return all(i in final for i in b.index)

        def release():
            while waiting and finished(waiting[0]):
                b = waiting.pop(0)
                b.extra["faces"] = [final.pop(i) for i in b.index]
                yield b

        prev = None
        for b in batches:
            for i, d, f in zip(b.index, b.dets, b.frames):
                sig = _signature(f)
                if prev is not None and float(np.abs(sig - prev).mean()) > CUT_DIFF:
                    tr.cut(i)
                prev = sig
                tr.push(i, d.boxes, d.scores, d.landmarks)
            waiting.append(b)
            final.update(tr.ready())
            yield from release()
        final.update(tr.flush())
        yield from release()
    return fn


def blur_stage(recipe) -> Callable:
    """Stage 'blur' for host engines after track.track_stage: each frame's faces (detected and held)
    through ops.recall.blur_geometry, replaced in place by recipe.blur.mode; faces that carry a FaceMesh
    oval (contour_stage) through ops.contour instead, the oval grown by the same mask_scale."""
    from ..ops.contour import anonymise_ovals, grown
    from ..ops.modes import anonymise
    from ..ops.recall import blur_geometry

    bl, m = recipe.blur, recipe.mask
    k_lm = recipe.outputs.num_landmarks or 5

    def fn(batches):
        for b in batches:
            for f, faces in zip(b.frames, b.extra["faces"]):
                ellipses = [x for x in faces if x.oval is None or not x.oval_alone]
                if ellipses:
                    boxes, lms, _ = blur_geometry(ellipses, bl.mask_scale, recipe.thresholds.score, k_lm)
                    anonymise(f, boxes, lms, bl.mode, bl.blocks_per_face, m.feather, m.max_tilt_deg, inplace=True)
                ovals = [x for x in faces if x.oval is not None]
                if ovals:
                    anonymise_ovals(f, [grown(x.oval, bl.mask_scale) for x in ovals], [x.box for x in ovals],
                                    bl.mode, bl.blocks_per_face)
            yield b
    return fn


def contour_stage(masks) -> Callable:
    """Stage 'contour' (--contour facemesh, host engines) between track and blur: sets each face's `oval`
    where ops.contour.ContourMasks gives one (detected faces FaceMesh confirms, and their held boxes)."""
    def fn(batches):
        for b in batches:
            for f, faces in zip(b.frames, b.extra["faces"]):
                for face, (oval, alone) in zip(faces, masks.frame(f, faces)):
                    face.oval, face.oval_alone = oval, alone
            yield b
    return fn
