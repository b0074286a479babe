"""The face contour as the blur's mask (`fbtool blur --contour facemesh`): FaceMesh's face oval in place
of the detector's ellipse, never smaller than the face.

Which mask a face gets (per track.Face, in frame order after the tracker):
- a detected face (score >= thresholds.score) is cropped as MediaPipe crops it (turned by the eye line
  only where the five detector points look frontal, recall.plausible_landmarks: on a profile the eye
  line is noise) and run through FaceMesh (toolchain.contours); where FaceMesh confirms it
  (presence >= contour.presence) and the oval is a face's (OVAL_MIN_AREA of the box's inscribed
  ellipse at least, its centroid inside the box), the mask is the oval grown by blur.mask_scale about
  its centroid, and the track remembers the oval relative to its box;
- a face whose detector points do not look frontal (a strong tilt, a profile) gets the oval AND its
  recall-first ellipse (the union): on a head tilted past 30 degrees the oval alone left the hair line
  inside the audit's face ellipse sharp (head-pose-face-detection-female-and-male.gif, 76-89% detail
  drop where 90% is needed), the ellipse alone misses the chin of a turned face;
- a held face (gap, lead, hold) of a track that has an oval: that oval carried onto the held box
  (shifted and scaled with it: a held box grows as its position gets less certain, so does the oval),
  with the ellipse too where the oval came from a face that did not look frontal;
- everything else (FaceMesh says "no face", profiles, backs of heads, tiny faces, tracks that never had
  an oval): the detector's recall-first ellipse (recall.blur_geometry), exactly as without --contour.
So FaceMesh can only replace an ellipse where it sees the face; where it does not, the mask is the one
the audit already passed.
"""

from __future__ import annotations

import math

import numpy as np

from ...reference.contour import polygon_bounds, polygon_frame_mask
from .modes import face_k, replacement
from .recall import plausible_landmarks

OVAL_MIN_AREA = 0.6  # oval area / the detector box's inscribed-ellipse area: below, not this face's oval
EDGE_FEATHER_PX = 0.1  # soft edge outside the oval: this x the oval's short radius (inside stays 1)


def polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def oval_ok(polygon: np.ndarray, box) -> bool:
    """The oval is a face's in this box: large enough, centred inside it, finite."""
    if not np.all(np.isfinite(polygon)):
        return False
    x1, y1, x2, y2 = (float(v) for v in box)
    c = polygon.mean(axis=0)
    ellipse = math.pi * (x2 - x1) * (y2 - y1) / 4.0
    return polygon_area(polygon) >= OVAL_MIN_AREA * ellipse and x1 <= c[0] <= x2 and y1 <= c[1] <= y2


def grown(polygon: np.ndarray, scale: float) -> np.ndarray:
    c = polygon.mean(axis=0)
    return c + (polygon - c) * scale


def carried(rel: np.ndarray, box) -> np.ndarray:
    """An oval kept relative to its box ((p - box centre) / box size) placed on another box."""
    b = np.asarray(box, np.float64)
    return (b[:2] + b[2:]) / 2 + rel * (b[2:] - b[:2])


def relative(polygon: np.ndarray, box) -> np.ndarray:
    b = np.asarray(box, np.float64)
    return (polygon - (b[:2] + b[2:]) / 2) / np.maximum(b[2:] - b[:2], 1e-6)


class ContourMasks:
    """Per job: FaceMesh on the detected faces, ovals remembered per track for the held ones."""

    def __init__(self, recipe, fm_recipe, runner):
        self.recipe, self.fm, self.runner = recipe, fm_recipe, runner
        self.spec = recipe.contour
        self.memory: dict[int, tuple[np.ndarray, bool]] = {}  # track -> (oval relative to its box, alone)
        self.counts = {"oval": 0, "held_oval": 0, "ellipse": 0, "no_face": 0}

    def frame(self, frame: np.ndarray, faces) -> list[tuple[np.ndarray | None, bool]]:
        """Per face: (the oval to blur (frame pixels, not yet grown) or None for the ellipse alone, whether
        the oval stands alone (a frontal face's) or goes with the face's ellipse)."""
        from ...contours import contours_frame

        min_score = self.recipe.thresholds.score
        todo = [i for i, f in enumerate(faces) if f.kind == "detected" and f.landmarks is not None
                and f.score >= min_score]
        out: list[tuple[np.ndarray | None, bool]] = [(None, False)] * len(faces)
        if todo:
            boxes = np.stack([faces[i].box for i in todo])
            lms = np.stack([np.asarray(faces[i].landmarks, np.float64).reshape(-1, 2) for i in todo])
            level = [not plausible_landmarks(faces[i].box, faces[i].landmarks, faces[i].score, min_score) for i in todo]
            lms[level, 1] = lms[level, 0] + np.array([1.0, 0.0])  # eyes level: an untilted crop
            for i, lv, c in zip(todo, level, contours_frame(frame, boxes, lms, self.spec, self.fm, self.runner)):
                poly = c.polygon
                if c.presence >= self.spec.presence and oval_ok(poly, faces[i].box):
                    out[i] = (poly, not lv)
                    self.memory[faces[i].track] = (relative(poly, faces[i].box), not lv)
                    self.counts["oval"] += 1
                else:
                    self.memory.pop(faces[i].track, None)  # a stale oval must not outlive "no face"
                    self.counts["no_face"] += 1
        for i, f in enumerate(faces):
            if out[i][0] is None and f.kind != "detected" and f.track in self.memory:
                rel, alone = self.memory[f.track]
                out[i] = (carried(rel, f.box), alone)
                self.counts["held_oval"] += 1
            elif out[i][0] is None:
                self.counts["ellipse"] += 1
        return out


def oval_mask(polygon: np.ndarray, h: int, w: int) -> np.ndarray:
    """[h, w] float32: 1 inside the oval, a soft edge outside it (never below 1 inside)."""
    import cv2

    inside = polygon_frame_mask(polygon, h, w).astype(np.float32)
    x1, y1, x2, y2 = polygon_bounds(polygon)
    r = max(1, int(round(EDGE_FEATHER_PX * min(x2 - x1, y2 - y1) / 2)))
    soft = cv2.blur(inside, (2 * r + 1, 2 * r + 1))
    return np.maximum(inside, np.clip(soft * 2.0, 0.0, 1.0))


def anonymise_ovals(frame: np.ndarray, polygons, boxes, mode: str = "blur", blocks_per_face: float = 3.0) -> None:
    """Replace each oval of one BGR frame in place (polygons already grown), strength from its face box."""
    import cv2

    h, w = frame.shape[:2]
    for poly, box in zip(polygons, boxes):
        k = face_k(box, blocks_per_face)
        x1, y1, x2, y2 = polygon_bounds(poly)
        pad = 2 * k
        x0, y0 = max(int(math.floor(x1)) - pad, 0) // k * k, max(int(math.floor(y1)) - pad, 0) // k * k
        xe, ye = min(int(math.ceil(x2)) + pad, w), min(int(math.ceil(y2)) + pad, h)
        if xe <= x0 or ye <= y0:
            continue
        region = frame[y0:ye, x0:xe]
        m = oval_mask(poly - np.array([x0, y0]), ye - y0, xe - x0)
        if not m.any():
            continue
        repl = replacement(region, k, mode)
        region[:] = cv2.blendLinear(np.ascontiguousarray(repl), np.ascontiguousarray(region), m, 1.0 - m)
