"""The one two-model loop: faces in, face contours out (detector faces -> MediaPipe's crop -> FaceMesh ->
face-oval polygon in frame pixels).

Used by `fbtool blur --contour facemesh`, the FaceMesh stages' gate and validate (which run it with
another runner), the contour measurements (docs/contour.md) and the cost bench. The geometry (crop,
FACE_OVAL, polygon, masks) is toolchain.reference.contour's; the crop's pixels go through the one
preprocessing (toolchain.reference.preprocess.normalize) with the FaceMesh recipe's colour, mean, scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reference.contour import CROP_SIDE, Crop, facemesh_crop_box, oval_polygon, polygon_frame_mask
from .reference.preprocess import normalize


@dataclass
class FaceContour:
    crop: Crop
    presence: float  # FaceMesh's face-presence probability
    landmarks: np.ndarray  # [468, 3] crop pixels

    @property
    def polygon(self) -> np.ndarray:
        """[36, 2] face oval, frame pixels."""
        return oval_polygon(self.landmarks, self.crop)

    def frame_landmarks(self) -> np.ndarray:
        """[468, 2] every landmark in frame pixels."""
        m = self.crop.to_frame()
        return self.landmarks[:, :2].astype(np.float64) @ m[:, :2].T + m[:, 2]


def crops_for(boxes, landmarks, spec) -> list[Crop]:
    """MediaPipe's crop for each face (recipe `contour:` spec: crop_scale, rotate; eyes = landmarks 0, 1)."""
    out = []
    for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        lm = None if landmarks is None else np.asarray(landmarks[i], np.float64).reshape(-1, 2)
        out.append(facemesh_crop_box(box, None if lm is None else lm[0], None if lm is None else lm[1],
                                     scale=spec.crop_scale, rotate=spec.rotate and lm is not None))
    return out


def cut(frame: np.ndarray, crop: Crop) -> np.ndarray:
    """The crop's pixels, side x side, bilinear, zeros outside the frame. reference.contour's coordinates
    are continuous (pixel i spans [i, i+1]); OpenCV's sample at integers: shift by half a pixel both ways."""
    import cv2

    m = crop.to_crop().copy()
    m[:, 2] += m[:, :2].sum(axis=1) * 0.5 - 0.5
    return cv2.warpAffine(frame, m, (crop.side, crop.side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_tensor(frame: np.ndarray, crops: list[Crop], fm_recipe) -> np.ndarray:
    """[N, 3, 192, 192] float32 FaceMesh input for one BGR frame's crops."""
    p = fm_recipe.preprocess
    if not crops:
        return np.zeros((0, 3, fm_recipe.input.height, fm_recipe.input.width), np.float32)
    return np.stack([normalize(cut(frame, c), p.color, p.mean, p.scale) for c in crops])


def run_crops(x: np.ndarray, fm_recipe, runner, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(presence [N], landmarks [N, 468, 3]) for a stack of crops, `batch` at a time (the recipe's max)."""
    o = fm_recipe.outputs
    n = len(x)
    if n == 0:
        return np.zeros(0, np.float32), np.zeros((0, o.num_landmarks, 3), np.float32)
    step = batch or fm_recipe.input.batch.max
    pres, lms = [], []
    for i in range(0, n, step):
        out = runner.infer({fm_recipe.input.name: np.ascontiguousarray(x[i:i + step])})
        pres.append(np.asarray(out[o.scores], np.float32).reshape(-1))
        lms.append(np.asarray(out[o.landmarks], np.float32).reshape(-1, o.num_landmarks, 3))
    return np.concatenate(pres), np.concatenate(lms)


def contours_frame(frame: np.ndarray, boxes, landmarks, spec, fm_recipe, runner) -> list[FaceContour]:
    """FaceMesh on every face of one frame."""
    crops = crops_for(boxes, landmarks, spec)
    pres, lms = run_crops(crop_tensor(frame, crops, fm_recipe), fm_recipe, runner)
    return [FaceContour(c, float(p), lm) for c, p, lm in zip(crops, pres, lms)]


def contour_mask(contours: list[FaceContour], h: int, w: int, presence: float) -> np.ndarray:
    """[h, w] bool: union of the ovals of the faces FaceMesh confirms (presence >= `presence`)."""
    out = np.zeros((h, w), bool)
    for c in contours:
        if c.presence >= presence:
            out |= polygon_frame_mask(c.polygon, h, w)
    return out


@dataclass
class CropSet:
    """Real FaceMesh inputs: MediaPipe crops of the faces the default detector finds in some clips."""

    x: np.ndarray  # [N, 3, 192, 192] float32, the FaceMesh recipe's preprocessing
    crops: list[Crop]
    where: list[tuple[str, int]]  # (source, frame index) per crop
    source_hashes: set[str]

    def __len__(self) -> int:
        return len(self.x)


def face_crop_set(fm_recipe, sources, count: int, frames_per_crop: float = 0.5, min_score: float = 0.5) -> CropSet:
    """Up to `count` face crops from frames spread over `sources` (about count x frames_per_crop frames, at
    least one per clip), found by the default detector (PyTorch fp32, score >= min_score), cut as the
    two-model recipe cuts them (square 1.5x, eye-levelled)."""
    from .calibset import spread_frames
    from .detector import detect_frames
    from .errors import FbtoolError
    from .recipe import DEFAULT_RECIPE, ContourSpec, load_recipe
    from .runners import TorchRunner

    det = load_recipe(DEFAULT_RECIPE)
    frames = spread_frames(list(sources), max(len(sources), int(np.ceil(count * frames_per_crop))))
    dets = detect_frames([f.image for f in frames], det, TorchRunner(det), score_threshold=min_score)
    xs, crops, where = [], [], []
    for f, d in zip(frames, dets):
        cs = crops_for(d.boxes, d.landmarks, ContourSpec())
        if cs:
            xs.append(crop_tensor(f.image, cs, fm_recipe))
            crops += cs
            where += [(f.source, f.index)] * len(cs)
    if not crops:
        raise FbtoolError(f"no face in {len(frames)} frames of {', '.join(map(str, sources))}",
                          "give clips that show faces (the recipe's calibration_media / validation_media)")
    x = np.concatenate(xs)
    return CropSet(x[:count], crops[:count], where[:count], {f.sha256 for f in frames})


def model_inputs(recipe, n: int) -> np.ndarray:
    """n real inputs for parity checks: frames of the validation clips (detectors), face crops from them
    (landmark models), in the recipe's preprocessing."""
    from .frames import parity_frames
    from .recipe import LANDMARK_FAMILIES
    from .reference.preprocess import preprocess_batch

    if recipe.family in LANDMARK_FAMILIES:
        x = face_crop_set(recipe, recipe.validation_media[:2] or ["classroom.gif"], n).x
        return np.concatenate([x] * (-(-n // len(x))))[:n]
    return preprocess_batch(parity_frames(recipe, n), recipe)[0]


# Held-out crops the calibrate gate and `fbtool validate` judge a landmark model on: the same crops, so one
# product gets one verdict (with 40 crops INT8 passed the gate and failed validate's 48 on two presence flips).
GATE_CROPS = 48


def run_outputs(runner, x: np.ndarray, input_name: str, batch: int = 16) -> dict[str, np.ndarray]:
    outs: dict[str, list] = {}
    for i in range(0, len(x), batch):
        for k, v in runner.infer({input_name: np.ascontiguousarray(x[i:i + batch])}).items():
            outs.setdefault(k, []).append(np.asarray(v, np.float32))
    return {k: np.concatenate(v) for k, v in outs.items()}


def judge_landmarks(recipe, runner, x: np.ndarray, reference: dict[str, np.ndarray], precision: str) -> dict:
    """Figures and verdict of one candidate runner on the crops `x` against PyTorch's `reference` outputs."""
    from .compare.metrics import compare_landmarks
    from .compare.policy import landmark_checks

    o = recipe.outputs
    outs = run_outputs(runner, x, recipe.input.name)
    fig = compare_landmarks(reference, outs, o.scores, o.landmarks, recipe.thresholds.score, recipe.input.width)
    checks = landmark_checks(fig, recipe, precision)
    failures = [f"{c.metric} {c.value:.4f} {'<' if c.op == '>=' else '>'} {c.limit}" for c in checks if not c.ok]
    if not fig["finite"]:
        failures.append("outputs are not finite")
    return dict(fig, precision=precision, runner=runner.name, limits={c.metric: c.limit for c in checks},
                failures=failures, passed=not failures)


__all__ = ["CROP_SIDE", "GATE_CROPS", "CropSet", "FaceContour", "contour_mask", "contours_frame", "crop_tensor",
           "crops_for", "cut", "face_crop_set", "judge_landmarks", "model_inputs", "run_crops", "run_outputs"]
