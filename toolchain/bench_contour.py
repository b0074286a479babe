"""Figures of the FaceMesh contour (docs/contour.md): how well the face oval covers a hand-labelled face
compared with the detector's ellipse, and what FaceMesh costs per face on each runtime.

- `hand_label_figures`: per hand-labelled face (tests/golden/contour_hand_labels.json: traced by eye,
  without any model overlay), the detector (PyTorch fp32) finds the face, the two-model loop draws the
  oval; IoU with the hand polygon, and the area blurred outside it (over) / left sharp inside it (under)
  for what `fbtool blur` blurs: with --contour facemesh the oval grown x blur.mask_scale (with the
  recall-first ellipse too on a face that does not look frontal), without it the recall-first ellipse.
- `cost_per_face`: FaceMesh on real face crops (toolchain.contours.face_crop_set) at several batch
  sizes on every runtime that runs here (torch CPU/CUDA fp32/fp16, onnxruntime CPU/CUDA); medians of
  timed repeats after warm-up, CUDA synchronised; plus the crop cut + preprocessing on the CPU.
Measured by scripts/bench_facemesh.py (CPU here, the H200 through scripts/bench_facemesh_gpu.sh).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LABELS = Path(__file__).resolve().parent.parent / "tests" / "golden" / "contour_hand_labels.json"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def hand_label_figures(labels: str | Path = LABELS, recipe_name: str = "retinaface_mnet025_facemesh") -> dict:
    from .blur.ops.contour import grown
    from .blur.ops.recall import blur_geometry
    from .blur.pipeline.track import Face
    from .contours import contours_frame
    from .detector import detect_batch
    from .media import read_frames
    from .recipe import landmark_recipe, load_recipe
    from .reference.contour import polygon_frame_mask
    from .reference.masks import frame_mask
    from .reference.nms import iou_matrix
    from .runners import TorchRunner

    r = load_recipe(recipe_name)
    fm = landmark_recipe(r)
    assert fm is not None, f"{recipe_name} names no landmark model"
    det, fmr = TorchRunner(r), TorchRunner(fm)
    rows = []
    for face in json.loads(Path(labels).read_text())["faces"]:
        frame = read_frames(face["clip"], start=face["frame"], max_frames=1)[0]
        h, w = frame.shape[:2]
        d = detect_batch([frame], r, det)[0]
        j = int(np.argmax(iou_matrix(np.asarray([face["detector_box"]], np.float64), d.boxes.astype(np.float64))[0]))
        assert d.landmarks is not None  # a two-model recipe's detector has landmarks (checked on load)
        box, lm = d.boxes[j], d.landmarks[j]
        (c,) = contours_frame(frame, box[None], lm[None], r.contour, fm, fmr)
        hand = polygon_frame_mask(np.asarray(face["polygon"]), h, w)
        oval = polygon_frame_mask(c.polygon, h, w)
        blur_oval = polygon_frame_mask(grown(c.polygon, r.blur.mask_scale), h, w)
        ellipse = frame_mask(box[None], lm[None], w, h, r.mask.feather, r.mask.max_tilt_deg) >= 0.5
        gb, gl, ok = blur_geometry([Face(0, box, "detected", float(d.scores[j]), lm)], r.blur.mask_scale,
                                   r.thresholds.score)
        blur_ellipse = frame_mask(gb, gl, w, h, r.mask.feather, r.mask.max_tilt_deg) >= 0.5
        if not ok[0]:  # what --contour facemesh blurs on a face that does not look frontal: oval + ellipse
            blur_oval = blur_oval | blur_ellipse
        area = float(hand.sum())
        rows.append({
            "face": f"{face['clip']}#{face['frame']}", "hand_px": int(area), "presence": round(c.presence, 3),
            "frontal": bool(ok[0]),
            "iou_oval": _iou(oval, hand), "iou_ellipse": _iou(ellipse, hand),
            "blur_oval_over": float((blur_oval & ~hand).sum() / area), "blur_oval_under": float((hand & ~blur_oval).sum() / area),
            "blur_ellipse_over": float((blur_ellipse & ~hand).sum() / area),
            "blur_ellipse_under": float((hand & ~blur_ellipse).sum() / area),
        })
    keys = [k for k in rows[0] if k.startswith(("iou", "blur_"))]
    return {"faces": rows, "mean": {k: float(np.mean([x[k] for x in rows])) for k in keys}}


def _time(fn, repeats: int, sync=None) -> float:
    """Median seconds of fn() over `repeats` runs after 3 warm-ups."""
    for _ in range(3):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _runners(fm, onnx: Path | None, device: str) -> list[tuple[str, Callable[[np.ndarray], Any], Any]]:
    """(name, infer(x) callable, sync) for every runtime that runs here."""
    import torch

    from .models import build_model

    out: list[tuple[str, Callable[[np.ndarray], Any], Any]] = []
    for dev in (["cpu"] + (["cuda"] if device == "cuda" and torch.cuda.is_available() else [])):
        for dtype in ([torch.float32] + ([torch.float16] if dev == "cuda" else [])):
            model = build_model(fm).to(dev, dtype).eval()
            sync = torch.cuda.synchronize if dev == "cuda" else None

            def run(x, model=model, dev=dev, dtype=dtype):
                with torch.inference_mode():
                    return model(torch.from_numpy(x).to(dev, dtype, non_blocking=True))

            out.append((f"torch-{dev}-{'fp16' if dtype == torch.float16 else 'fp32'}", run, sync))
    if onnx is not None:
        import onnxruntime as ort

        provs = [["CPUExecutionProvider"]]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            provs.append(["CUDAExecutionProvider", "CPUExecutionProvider"])
        for p in provs:
            sess = ort.InferenceSession(str(onnx), providers=p)
            name = sess.get_inputs()[0].name

            def run_ort(x, sess=sess, name=name):
                return sess.run(None, {name: x})

            out.append((f"onnxruntime-{'cuda' if 'CUDA' in p[0] else 'cpu'}", run_ort, None))
    return out


def cost_per_face(x: np.ndarray, fm, onnx: Path | None = None, device: str = "cpu", batches=(1, 8, 32),
                  repeats: int = 10, frame: np.ndarray | None = None, crops=None) -> dict:
    """ms per face for FaceMesh on the crops `x` ([N, 3, 192, 192]); `frame` + `crops`: the crop cut and
    preprocessing cost on the CPU too."""
    rows = []
    for name, run, sync in _runners(fm, onnx, device):
        for b in batches:
            if b > fm.input.batch.max:
                continue
            xb = np.ascontiguousarray(np.resize(x, (b,) + x.shape[1:]))
            reps = repeats if name.endswith(("cuda-fp32", "cuda-fp16", "-cuda")) or b <= 8 else max(3, repeats // 3)
            s = _time(lambda run=run, xb=xb: run(xb), reps, sync)
            rows.append({"runtime": name, "batch": b, "ms_per_batch": s * 1e3, "ms_per_face": s * 1e3 / b,
                         "faces_per_s": b / s})
    info: dict = {"rows": rows}
    if frame is not None and crops:
        from .contours import crop_tensor
        from .recipe import load_recipe  # noqa: F401  (fm is already a recipe)

        s = _time(lambda: crop_tensor(frame, crops, fm), repeats)
        info["crop_ms_per_face"] = s * 1e3 / len(crops)
    return info


def table(info: dict) -> str:
    lines = ["| runtime | batch | ms / batch | ms / face | faces / s |", "|---|---:|---:|---:|---:|"]
    for r in info["rows"]:
        lines.append(f"| {r['runtime']} | {r['batch']} | {r['ms_per_batch']:.2f} | {r['ms_per_face']:.3f} | "
                     f"{r['faces_per_s']:.0f} |")
    if "crop_ms_per_face" in info:
        lines.append(f"\nCrop cut + preprocessing (OpenCV warpAffine, CPU): {info['crop_ms_per_face']:.3f} ms per face.")
    return "\n".join(lines)
