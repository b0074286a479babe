"""Proof that the output is blurred, judged by pixels, not by a face detector.

For every face the reference (PyTorch fp32 + toolchain.reference post-processing) finds in an input
frame, the high-frequency detail inside the face, the variance of the Laplacian over the inner ellipse
(the face's contour ellipse scaled by `inner`), must drop by at least `min_drop` in the output. Away
from faces (outside every box grown by `grow` around its centre) the output must match the input
with PSNR >= `min_psnr` dB (encoding loss only). Faces too flat to judge (input Laplacian variance
below MIN_VAR, see there) are reported, not judged.

Scale: detail is measured at the face's scale, not the file's. A face whose short side exceeds
FACE_SCALE_PX pixels is measured on the frame area-downscaled by s = floor(side / FACE_SCALE_PX)
(s = 1 for every face of the shared clips at their own size). Without it an upscaled frame (the
bench's 1080p frames are the clips x4) has almost no pixel-scale Laplacian left in any face, and the
8-bit rounding of any smooth gradient (Laplacian variance ~1) would hide a 99% blur behind a "90%".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..compare.policy import BLUR_MIN_DETAIL_DROP as MIN_DROP
from ..compare.policy import BLUR_MIN_PSNR_DB as MIN_PSNR
from ..reference.masks import ellipse_params

INNER, GROW = 0.8, 1.5  # where detail and background are measured (not pass/fail limits)
# 8-bit rounding of a smooth gradient alone leaves a Laplacian variance of ~2 (uniform rounding noise:
# 20/12), so a face needs >= 10x that in the input for a 90% drop to be measurable at all.
MIN_VAR = 25.0
FACE_SCALE_PX = 48


def _laplacian(img: np.ndarray) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    return cv2.Laplacian(gray.astype(np.float64), cv2.CV_64F, ksize=1)


def inner_ellipse(shape, box, landmarks, scale: float = INNER, max_tilt_deg: float = 45.0) -> np.ndarray:
    """Boolean [H, W]: pixel centres inside the face ellipse with both semi-axes scaled by `scale`."""
    h, w = shape[:2]
    cx, cy, a, b, t = ellipse_params(box, landmarks, max_tilt_deg)
    a, b = a * scale, b * scale
    if a <= 0 or b <= 0:
        return np.zeros((h, w), dtype=bool)
    px = np.arange(w) + 0.5 - cx
    py = np.arange(h) + 0.5 - cy
    c, s = math.cos(t), math.sin(t)
    u = c * px[None, :] + s * py[:, None]
    v = -s * px[None, :] + c * py[:, None]
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def away_mask(shape, boxes, grow: float = GROW) -> np.ndarray:
    """Boolean [H, W]: True outside every box grown by `grow` (x1.5 = 25% more on each side)."""
    h, w = shape[:2]
    m = np.ones((h, w), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        m[max(int(math.floor(cy - hh)), 0):max(int(math.ceil(cy + hh)), 0),
          max(int(math.floor(cx - hw)), 0):max(int(math.ceil(cx + hw)), 0)] = False
    return m


def _scaled(inp, out, box, lm, s: int, max_tilt_deg: float):
    """Laplacians of the face's neighbourhood area-downscaled by s, and the inner ellipse there."""
    import cv2

    h, w = inp.shape[:2]
    x0, y0 = max(int(box[0]) - 2 * s, 0) // s * s, max(int(box[1]) - 2 * s, 0) // s * s
    x1, y1 = min(int(np.ceil(box[2])) + 2 * s, w), min(int(np.ceil(box[3])) + 2 * s, h)
    cw, ch = (x1 - x0) // s, (y1 - y0) // s
    if cw < 3 or ch < 3:
        z = np.zeros(0)
        return z, z, np.zeros((0,), dtype=bool)

    def lap(img):
        crop = img[y0:y0 + ch * s, x0:x0 + cw * s]
        return _laplacian(cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA))

    sb = (np.asarray(box, dtype=np.float64) - [x0, y0, x0, y0]) / s
    slm = None if lm is None else (np.asarray(lm, dtype=np.float64) - [x0, y0]) / s
    m = inner_ellipse((ch, cw), sb, slm, INNER, max_tilt_deg)
    return lap(inp)[m], lap(out)[m], m


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


class JudgedFaces:
    """What every pixel verdict asks of its faces (`faces` dicts with `judged` and `drop`): the proof's
    and the audit's reports share it."""

    faces: list
    min_drop: float

    @property
    def judged(self) -> list:
        return [f for f in self.faces if f["judged"]]

    @property
    def leaks(self) -> list:
        """Judged faces that kept too much detail."""
        return [f for f in self.judged if f["drop"] < self.min_drop]

    @property
    def worst_drop(self) -> float | None:
        return min((f["drop"] for f in self.judged), default=None)


@dataclass
class ProofReport(JudgedFaces):
    frames: int = 0
    faces: list = field(default_factory=list)  # per face: frame, box, var_in, var_out, drop, judged
    psnr_min: float = float("inf")
    psnr_frames: list = field(default_factory=list)
    min_drop: float = MIN_DROP
    min_psnr: float = MIN_PSNR

    @property
    def ok(self) -> bool:
        return self.frames > 0 and not self.leaks and self.psnr_min >= self.min_psnr

    def failures(self) -> list[str]:
        out = [f"frame {f['frame']} face {f['box']}: detail dropped {f['drop']:.1%} < {self.min_drop:.0%} "
               f"(Laplacian variance {f['var_in']:.0f} -> {f['var_out']:.0f})" for f in self.leaks]
        out += [f"frame {i}: PSNR away from faces {p:.1f} dB < {self.min_psnr} dB"
                for i, p in self.psnr_frames if p < self.min_psnr]
        return out

    def to_dict(self) -> dict:
        return {"ok": self.ok, "frames": self.frames, "faces": len(self.faces), "faces_judged": len(self.judged),
                "worst_detail_drop": self.worst_drop, "face_leaks": len(self.leaks),
                "frames_below_min_psnr": sum(p < self.min_psnr for _, p in self.psnr_frames),
                "psnr_min_db": None if math.isinf(self.psnr_min) else self.psnr_min,  # inf: identical (JSON-safe)
                "thresholds": {"min_drop": self.min_drop, "min_psnr_db": self.min_psnr, "inner": INNER,
                               "grow": GROW}, "failures": self.failures()[:20]}

    def summary(self) -> str:
        wd = "n/a" if self.worst_drop is None else f"{self.worst_drop:.1%}"
        return (f"{'PASS' if self.ok else 'FAIL'}: {self.frames} frames, {len(self.judged)}/{len(self.faces)} faces "
                f"judged, worst detail drop {wd} (need >= {self.min_drop:.0%}), PSNR away from faces >= "
                f"{self.psnr_min:.1f} dB (need >= {self.min_psnr:.0f})")


def check_frame(report: ProofReport, index: int, inp: np.ndarray, out: np.ndarray, dets,
                max_tilt_deg: float = 45.0) -> None:
    """Add one frame's evidence: `dets` are the reference's faces in `inp` (frame pixels)."""
    if inp.shape != out.shape:
        raise ValueError(f"frame {index}: output {out.shape} differs from input {inp.shape}")
    report.frames += 1
    lap_in, lap_out = _laplacian(inp), _laplacian(out)
    for i, box in enumerate(dets.boxes):
        lm = None if dets.landmarks is None else dets.landmarks[i]
        side = float(min(box[2] - box[0], box[3] - box[1]))
        s = max(1, int(side // FACE_SCALE_PX))
        if s == 1:
            m = inner_ellipse(inp.shape, box, lm, INNER, max_tilt_deg)
            li, lo = lap_in[m], lap_out[m]
        else:
            li, lo, m = _scaled(inp, out, box, lm, s, max_tilt_deg)
        n = int(m.sum())
        var_in = float(li.var()) if n > 1 else 0.0
        var_out = float(lo.var()) if n > 1 else 0.0
        judged = n > 1 and var_in >= MIN_VAR
        drop = 1.0 - var_out / var_in if judged else None
        report.faces.append({"frame": index, "box": [round(float(v), 1) for v in box], "pixels": n, "scale": s,
                             "var_in": round(var_in, 3), "var_out": round(var_out, 3),
                             "drop": drop, "judged": judged})
    away = away_mask(inp.shape, dets.boxes)
    p = psnr(inp[away], out[away])
    report.psnr_frames.append((index, p))
    report.psnr_min = min(report.psnr_min, p)


def verify_frames(recipe, inputs, outputs, runner=None, indices=None) -> ProofReport:
    """Judge output frames against input frames; faces from the reference detector on the inputs."""
    from ..detector import detect_batch
    from ..runners import TorchRunner

    runner = runner or TorchRunner(recipe)
    report = ProofReport()
    for j, (a, b) in enumerate(zip(inputs, outputs)):
        dets = detect_batch([a], recipe, runner)[0]
        check_frame(report, indices[j] if indices else j, a, b, dets, recipe.mask.max_tilt_deg)
    return report


def verify_video(recipe, source, output, start: int = 0, max_frames: int | None = None, runner=None) -> dict:
    """Stream both videos side by side (constant memory) and judge every frame."""
    from ..errors import FbtoolError
    from ..media import iter_frames

    ins = iter_frames(source, start=start, max_frames=max_frames)
    outs = iter_frames(output)
    report = ProofReport()
    from ..detector import detect_batch
    from ..runners import TorchRunner

    runner = runner or TorchRunner(recipe)
    n_out = 0
    for (i, a), (_, b) in zip(ins, outs):
        n_out += 1
        dets = detect_batch([a], recipe, runner)[0]
        h, w = b.shape[:2]  # the encoder crops odd sizes to even
        check_frame(report, i, a[:h, :w], b, dets, recipe.mask.max_tilt_deg)
    if n_out == 0:
        raise FbtoolError(f"no frame to compare between {source} and {output}")
    d = report.to_dict()
    d["summary"] = report.summary()
    return d
