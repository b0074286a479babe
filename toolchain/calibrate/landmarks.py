"""`fbtool calibrate` for a landmark model (FaceMesh): the same products as for a detector (INT8 Q/DQ with
its TensorRT cache, AutoCast FP16), made from and judged on face crops instead of frames.

Calibration crops: the faces the default detector finds in the recipe's calibration_media, cut as the
two-model recipe cuts them (toolchain.contours.face_crop_set). The gate: the candidate and PyTorch fp32 on
crops from the held-out validation_media, compared by compare.metrics.compare_landmarks (landmark error
in crop pixels, face-oval IoU, the presence decision) against compare.policy.landmark_checks, the checks
`fbtool validate` applies too. A product that fails is deleted, as for a detector.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..errors import FbtoolError
from ..fsutil import atomic_path, write_json
from ..runfolder import RunFolder, fingerprint


def calibrate_landmarks(recipe, out, src: Path, folder: Path, methods, fp16: bool, sources, frames: int,
                        eval_frames: int, trt_version: str, validation, step) -> dict:
    """The run folder's landmark model `src` calibrated into `folder`, its products named and gated as a
    detector's are (calibrate.products)."""
    from ..contours import GATE_CROPS, face_crop_set, judge_landmarks, run_outputs
    from ..runners import TorchRunner
    from ..trt.calib_cache import trt_version_number
    from .gate import candidate_runner
    from .products import make_products
    from .stats import collect

    t0 = time.perf_counter()
    trt_number = trt_version_number(trt_version)
    run = RunFolder(out)
    step(f"calibration crops ({frames}) and held-out gate crops ({GATE_CROPS})")
    cs = face_crop_set(recipe, sources, frames)
    gate_set = face_crop_set(recipe, validation, GATE_CROPS)  # eval_frames counts a detector's frames
    if cs.source_hashes & gate_set.source_hashes:
        raise FbtoolError("a calibration source is also a validation clip",
                          "calibration and accuracy-gate crops must come from different clips")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "calib_set.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, cs.x)
    write_json(folder / "calib_manifest.json", {"kind": "face crops", "recipe": recipe.name,
                                                "crops": [{"source": s, "frame": i} for s, i in cs.where]})
    step(f"activation statistics ({len(cs)} crops, 2 passes)")
    batches = [cs.x[i:i + 8] for i in range(0, len(cs), 8)]
    stats = collect(src, batches)
    stats_path = stats.save(folder / "stats.npz")
    step(f"PyTorch fp32 reference on {len(gate_set)} held-out crops")
    reference = run_outputs(TorchRunner(recipe), gate_set.x, recipe.input.name)
    artifacts: dict = {"calib_set": folder / "calib_manifest.json", "calib_data": folder / "calib_set.npy",
                       "stats": stats_path}
    info: dict = {"input_onnx": os.path.relpath(src, run.root), "calibration_frames": len(cs),
                  "gate_frames": len(gate_set), "reference_faces": len(gate_set), "unit": "face crops",
                  "trt_version": trt_version, "trt_version_number": trt_number, "products": {}}
    failed = make_products(run, src, folder, methods, fp16, stats, cs.x, cs.x[:8], recipe.input.name, trt_version,
                           lambda path, precision: judge_landmarks(recipe, candidate_runner(path), gate_set.x,
                                                                   reference, precision),
                           step, f"{len(gate_set)} held-out crops", artifacts, info)
    info["failed"] = failed
    info["seconds"] = round(time.perf_counter() - t0, 1)
    run.record("calibrate", artifacts, info, recipe=recipe,
               inputs=fingerprint(recipe.hash, src, methods, fp16, [str(s) for s in sources], frames, eval_frames,
                                  trt_version, [str(v) for v in validation]))
    # A landmark model's INT8 that misses the gate is reported, not fatal: the chain goes on with FP16
    # (the brief: INT8 only where it passes). A failed FP16 stops the command, as for a detector.
    if any(f.startswith("fp16") for f in failed):
        raise FbtoolError(f"accuracy gate failed for {failed[0]}", "figures are in the manifest")
    return info


__all__ = ["calibrate_landmarks"]
