"""Accuracy gate: a reduced-precision ONNX against the PyTorch fp32 reference on held-out real frames.

Used by `fbtool calibrate` (INT8 Q/DQ, FP16) and reusable by `fbtool validate`. The candidate runs in
onnxruntime (onnx's reference evaluator where onnxruntime has no kernel, e.g. some fp16 ops); both
sides go through the one reference post-processing (toolchain.detector) and are compared with
toolchain.compare.metrics: detection F1 at IoU 0.5, mean matched IoU, landmark error (px), score deltas,
and per-output tensor error. Which recipe tolerance applies is toolchain.compare.policy's, the policy
`fbtool validate` applies too, so both commands give one product the same verdict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import FbtoolError
from .stats import check_outputs_live


@dataclass
class Reference:
    """PyTorch fp32 results on the gate frames, computed once and shared by every candidate."""

    detections: list
    outputs: dict[str, np.ndarray]  # raw outputs, frames concatenated on axis 0
    frames: int
    baseline: dict[str, np.ndarray] | None = None  # fp32 ONNX outputs, for layouts torch does not produce


class RefEvalRunner:
    """onnx.reference.ReferenceEvaluator behind the runner interface: slow, but has every fp16 kernel."""

    def __init__(self, onnx_path):
        from onnx.reference import ReferenceEvaluator

        self.sess = ReferenceEvaluator(str(onnx_path))
        self.name = f"onnx-reference:{os.path.basename(str(onnx_path))}"
        self.input_name = self.sess.input_names[0]
        self.output_names = list(self.sess.output_names)

    def infer(self, feed):
        x = feed[self.input_name] if self.input_name in feed else next(iter(feed.values()))
        outs = self.sess.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}


def candidate_runner(onnx_path):
    from ..runners import OrtRunner

    try:
        return OrtRunner(onnx_path)
    except FbtoolError:
        raise
    except Exception as exc:  # NOT_IMPLEMENTED: a kernel onnxruntime lacks (fp16 on CPU)
        if "NOT_IMPLEMENTED" not in str(exc) and "Could not find an implementation" not in str(exc):
            raise
        return RefEvalRunner(onnx_path)


def _images(frames) -> list[np.ndarray]:
    return [getattr(f, "image", f) for f in frames]


def check_held_out(frames, calibration_hashes: set[str] | None) -> None:
    """Refuse gate frames that come from a calibration source (by file content)."""
    if not calibration_hashes:
        return
    for f in frames:
        if getattr(f, "sha256", None) in calibration_hashes:
            raise FbtoolError(f"gate frame {f.source}#{f.index} comes from a calibration source",
                              "evaluate on clips that were not used for calibration")


def reference_run(recipe, frames, torch_runner=None, batch: int = 4) -> Reference:
    from ..detector import detect_frames, stack_raw
    from ..runners import TorchRunner

    raw: list[dict[str, np.ndarray]] = []
    dets = detect_frames(_images(frames), recipe, torch_runner or TorchRunner(recipe), batch=batch, raw=raw)
    return Reference(dets, stack_raw(raw) or {}, len(dets))


def _baseline_outputs(ref: Reference, baseline_onnx, frames, recipe, batch: int) -> dict[str, np.ndarray]:
    """fp32 ONNX outputs on the gate frames (computed once per Reference)."""
    from ..detector import detect_frames, stack_raw
    from ..runners import OrtRunner

    if ref.baseline is None:
        raw: list[dict[str, np.ndarray]] = []
        detect_frames(_images(frames), recipe, OrtRunner(baseline_onnx), batch=batch, raw=raw)
        ref.baseline = stack_raw(raw) or {}
    return ref.baseline


def accuracy_gate(recipe, candidate_onnx, frames: Sequence, precision: str = "int8", reference: Reference | None = None,
                  calibration_hashes: set[str] | None = None, batch: int = 4, baseline_onnx=None) -> dict:
    """Compare `candidate_onnx` with PyTorch fp32 on `frames`; returns figures, thresholds and `passed`.

    Detections are always compared with PyTorch. Per-output tensor errors are against PyTorch's
    outputs where the names match (raw layout), else against `baseline_onnx` (the fp32 model the
    candidate was made from, e.g. a graph with in-graph decode).
    """
    from ..compare.metrics import compare_detections, tensor_stats
    from ..compare.policy import detection_checks
    from ..detector import detect_frames, stack_raw

    if not frames:
        raise FbtoolError("the accuracy gate got no frame", "give validation media with readable frames")
    check_held_out(frames, calibration_hashes)
    ref = reference or reference_run(recipe, frames, batch=batch)
    runner = candidate_runner(candidate_onnx)
    raw: list[dict[str, np.ndarray]] = []
    dets = detect_frames(_images(frames), recipe, runner, batch=batch, raw=raw)
    outs = stack_raw(raw) or {}
    check_outputs_live({k: float(np.abs(v).max()) if v.size else 0.0 for k, v in outs.items()},
                       f"the {precision} model {os.path.basename(str(candidate_onnx))}")
    summary, matches = compare_detections(ref.detections, dets, iou_threshold=0.5, with_masks=False)
    deltas = np.asarray([d for m in matches for d in m.score_deltas], dtype=np.float64)
    against = ref.outputs
    if baseline_onnx is not None and not set(outs) & set(ref.outputs):
        against = _baseline_outputs(ref, baseline_onnx, frames, recipe, batch)
    tensors = {k: tensor_stats(against[k], outs[k]) for k in outs
               if k in against and against[k].shape == outs[k].shape}
    checks = detection_checks(summary, recipe, precision)  # the same policy as `fbtool validate`
    limits = {c.metric: c.limit for c in checks}
    failures = [f"{c.metric} {c.value:.4f} {'<' if c.op == '>=' else '>'} {c.limit}" for c in checks if not c.ok]
    failures += [f"output {k} is not finite" for k, t in tensors.items() if not t["finite"]]
    return {
        "precision": precision, "candidate": str(candidate_onnx), "runner": runner.name, "frames": summary.frames,
        "reference_faces": summary.tp + summary.fn, "candidate_faces": summary.tp + summary.fp,
        "tp": summary.tp, "fp": summary.fp, "fn": summary.fn, "precision_det": summary.precision,
        "recall": summary.recall, "f1": summary.f1, "mean_iou": summary.mean_iou, "min_iou": summary.min_iou,
        "mean_landmark_px": summary.mean_landmark_px, "max_landmark_px": summary.max_landmark_px,
        "max_box_px": summary.max_box_px, "max_score_delta": summary.max_score_delta,
        "mean_score_delta": float(deltas.mean()) if deltas.size else 0.0,
        "tensors": tensors, "limits": limits, "failures": failures, "passed": not failures,
    }
