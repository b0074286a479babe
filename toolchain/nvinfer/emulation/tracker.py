"""nvtracker + fbtool's hold/mask component in Python: what DeepStream's blur pipeline blurs per frame.

Two parts, each the Python side of something that runs in DeepStream:
- `HoldRule`: the one Python reference of the compiled component `plugins/dsblur/ds_hold.cpp` (same
  rule, compared frame by frame in tests/test_ds_hold.py): every object of a blurred class is blurred,
  a face nvtracker shadow-tracks is re-created with its last box and last mask for up to `hold` frames
  after it was last seen. Mask rule `box` (one model, Recipe.live_blur_mask): every blurred mask is the
  whole box; `own` (the two-model chain's contours): binary (>= its threshold) and non-empty (else the
  track's last mask, else the whole box). (The kernel and its twin grow each box by their
  recall-first margin, ops/dsblur.py GROW.)
- `IouTracker`: nvtracker's IOU low-level tracker as configured by `fbtool deepstream`
  (toolchain/deepstream/tracker.py): `probationAge: 0` (a new face is a target from its first frame),
  greedy IoU association, a missed target shadow-tracked for `maxShadowTrackingAge` frames. The
  low-level library is closed; this is its documented behaviour, not its code (docs/deepstream.md).

`DeepStreamHold` chains both over a clip's nvinfer objects (nvinfer.NvInferEmulator.infer) for
`fbtool validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .nvinfer import ObjectMeta

UNTRACKED = -1


@dataclass
class Tracked:
    """One object in a frame's object list after nvtracker: nvinfer's object and its tracking id."""

    obj: ObjectMeta
    id: int = UNTRACKED


@dataclass
class Target:
    """One object the component blurs (the fields hold_driver prints)."""

    obj: ObjectMeta  # the object in the frame's list, with its binary, non-empty mask
    id: int
    held: bool = False
    misses: int = 0
    mask_from: str = "own"  # own | held | box

    def to_json(self) -> dict:
        o = self.obj
        return {"id": self.id, "class": o.class_id, "held": self.held, "misses": self.misses,
                "mask_from": self.mask_from, "box": [o.left, o.top, o.width, o.height],
                "mask_w": int(o.mask.shape[1]), "mask_h": int(o.mask.shape[0]),
                "mask": [float(v) for v in o.mask.ravel()]}


WHOLE_BOX = np.ones((1, 1), np.float32)


def binarise(mask: np.ndarray | None, threshold: float) -> np.ndarray | None:
    """ds_hold.cpp's fbtool_binarise_mask: 1 where >= threshold (0.5 when unset), else 0; None when empty."""
    if mask is None or mask.size == 0:
        return None
    thr = np.float32(threshold if threshold > 0 else 0.5)
    out = (mask.astype(np.float32) >= thr).astype(np.float32)
    return out if out.any() else None


@dataclass
class _Track:
    obj: ObjectMeta
    mask: np.ndarray | None
    last: int


@dataclass
class HoldRule:
    hold: int
    classes: tuple[int, ...] = ()  # empty: every class
    mask: str = "box"  # box | own (ds_hold.cpp FbtoolHoldConfig.whole_box)
    tracks: dict = field(default_factory=dict)  # (pad, id) -> _Track

    def step(self, frame_num: int, objects: list[Tracked], shadow_ids, pad: int = 0) -> list[Target]:
        out: list[Target] = []
        present = set()
        for t in objects:
            o = t.obj
            if self.classes and o.class_id not in self.classes:
                continue
            tr = self.tracks.get((pad, t.id)) if t.id != UNTRACKED else None
            mask, src = (WHOLE_BOX, "box") if self.mask == "box" else (binarise(o.mask, o.mask_threshold), "own")
            if mask is None:
                mask, src = (tr.mask, "held") if tr is not None and tr.mask is not None else (WHOLE_BOX, "box")
            blurred = replace(o, mask=mask, mask_threshold=0.5)
            if t.id != UNTRACKED:
                present.add(t.id)
                old = self.tracks.get((pad, t.id))
                keep = mask if src == "own" else (old.mask if old is not None else None)
                self.tracks[(pad, t.id)] = _Track(blurred, keep, frame_num)
            out.append(Target(blurred, t.id, mask_from=src))
        for sid in shadow_ids:
            tr = self.tracks.get((pad, sid))
            if sid in present or tr is None:
                continue
            misses = frame_num - tr.last
            if not 1 <= misses <= self.hold:
                continue
            mask = tr.mask if tr.mask is not None else WHOLE_BOX
            out.append(Target(replace(tr.obj, mask=mask, mask_threshold=0.5), sid, True, misses,
                              "box" if tr.mask is None else "held"))
            present.add(sid)
        self.tracks = {k: v for k, v in self.tracks.items() if k[0] != pad or frame_num - v.last <= self.hold}
        return out

    def reset_stream(self, pad: int) -> None:
        self.tracks = {k: v for k, v in self.tracks.items() if k[0] != pad}


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class IouTracker:
    """The IOU low-level tracker with probationAge 0: ids for a frame's objects and the shadow list."""

    max_shadow_age: int
    min_iou: float
    classes: tuple[int, ...] = ()  # operate-on-class-ids: other classes stay untracked
    targets: dict = field(default_factory=dict)  # id -> (box, class, misses)
    next_id: int = 0

    def step(self, objects: list[ObjectMeta]) -> tuple[list[Tracked], list[int]]:
        tracked = [Tracked(o) for o in objects]
        cand = [i for i, o in enumerate(objects) if not self.classes or o.class_id in self.classes]
        pairs = sorted(((_iou(t[0], objects[i].box), tid, i) for tid, t in self.targets.items() for i in cand
                        if t[1] == objects[i].class_id), reverse=True)
        used_t, used_d = set(), set()
        for score, tid, i in pairs:
            if score < self.min_iou or tid in used_t or i in used_d:
                continue
            used_t.add(tid)
            used_d.add(i)
            tracked[i].id = tid
            self.targets[tid] = (objects[i].box, objects[i].class_id, 0)
        for i in cand:
            if i not in used_d:  # probationAge 0: a target (and an id) from the first frame
                tracked[i].id = self.next_id
                self.targets[self.next_id] = (objects[i].box, objects[i].class_id, 0)
                self.next_id += 1
        shadow = []
        for tid, (box, cls, misses) in list(self.targets.items()):
            if tid in used_t or any(t.id == tid for t in tracked):
                continue
            if misses + 1 > self.max_shadow_age:
                del self.targets[tid]
                continue
            self.targets[tid] = (box, cls, misses + 1)
            shadow.append(tid)
        return tracked, shadow


@dataclass
class DeepStreamHold:
    """nvinfer objects of consecutive frames -> what fbtool's DeepStream pipeline blurs in each frame."""

    hold: int
    min_iou: float
    classes: tuple[int, ...] = ()
    mask: str = "box"

    def run(self, frames_objects: list[list[ObjectMeta]]) -> list[list[Target]]:
        tracker = IouTracker(self.hold, self.min_iou, self.classes)
        rule = HoldRule(self.hold, self.classes, self.mask)
        out = []
        for n, objs in enumerate(frames_objects):
            tracked, shadow = tracker.step(objs)
            out.append(rule.step(n, tracked, shadow))
        return out
