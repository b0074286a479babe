"""`fbtool calibrate`: one calibration run -> INT8 Q/DQ ONNX(es), legacy cache(s), FP16 ONNX, all gated.

Order: calibration set (disjoint from the gate's clips) -> one activation-statistics pass -> per method
a TensorRT cache and a Model Optimizer Q/DQ model using the cache's scales -> AutoCast FP16 -> each
candidate through the accuracy gate against PyTorch fp32 on held-out validation frames. A candidate
that fails the gate is deleted (never left where a later stage could pick it up), the figures are
recorded in the manifest, and the command stops with an error naming the failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from ..errors import FbtoolError
from ..runfolder import RunFolder, fingerprint
from .stats import METHODS

CALIB_DIR = "calib"


def input_model(run: RunFolder) -> Path:
    """Surgery's output when the run folder has one, else the export."""
    return cast(Path, run.model_onnx())  # required: raises if absent


def calibrate(recipe, out: str | os.PathLike, methods: Sequence[str] = ("entropy",), fp16: bool = True,
              sources: Sequence[str] | None = None, frames: int = 64, eval_frames: int = 40,
              trt_version: str = "10.3", validation: Sequence[str] | None = None) -> dict:
    """Calibrate the run folder's model. `sources`/`validation` default to the recipe's media lists."""
    from ..progress import steps

    n_methods = len(dict.fromkeys(methods))
    # calibration set, statistics, reference run, then per product: make it, gate it
    with steps("calibrate", 3 + 2 * n_methods + (2 if fp16 else 0)) as step:
        return _calibrate(recipe, out, methods, fp16, sources, frames, eval_frames, trt_version, validation, step)


def _calibrate(recipe, out, methods, fp16, sources, frames, eval_frames, trt_version, validation, step) -> dict:
    from ..calibset import build_calibration_set, spread_frames
    from ..trt.calib_cache import trt_version_number
    from .gate import accuracy_gate, check_held_out, reference_run
    from .products import make_products
    from .stats import collect

    t0 = time.perf_counter()
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in METHODS:
            raise FbtoolError(f"unknown calibration method {m!r}", f"choose from {', '.join(METHODS)} or both")
    if not methods and not fp16:
        raise FbtoolError("nothing to do: no INT8 method and --no-fp16", "pick --method or --fp16")
    from ..recipe import LANDMARK_FAMILIES

    if recipe.family in LANDMARK_FAMILIES:  # FaceMesh: face crops in, landmark figures out
        from .landmarks import calibrate_landmarks

        return calibrate_landmarks(recipe, out, input_model(RunFolder(out)), RunFolder(out).root / CALIB_DIR,
                                   methods, fp16, list(sources or recipe.calibration_media), frames, eval_frames,
                                   trt_version, list(validation or recipe.validation_media), step)
    trt_number = trt_version_number(trt_version)  # validates before any work
    run = RunFolder(out)
    src = input_model(run)
    validation = list(validation) if validation else list(recipe.validation_media)
    if not validation:
        raise FbtoolError(f"recipe {recipe.name} lists no validation_media for the accuracy gate",
                          "add held-out clips to validation_media in the recipe, or pass --eval-source")
    sources = list(sources) if sources else list(recipe.calibration_media)
    folder = run.root / CALIB_DIR

    step(f"calibration set ({frames} frames)")
    cs = build_calibration_set(recipe, sources, frames, folder, validation)
    gate_frames = spread_frames(validation, eval_frames)
    check_held_out(gate_frames, cs.source_hashes)
    step(f"activation statistics ({len(cs)} frames, 2 passes)")
    stats = collect(src, cs)
    stats_path = stats.save(folder / "stats.npz")
    step(f"PyTorch fp32 reference on {len(gate_frames)} held-out frames")
    reference = reference_run(recipe, gate_frames)
    if not any(len(d) for d in reference.detections):
        raise FbtoolError(f"no face in the validation media ({len(gate_frames)} frames of "
                          f"{', '.join(map(str, validation))}): the accuracy gate would pass on nothing",
                          "give held-out clips that show faces (--eval-source or validation_media)")

    artifacts: dict[str, str | os.PathLike] = {"calib_set": folder / "calib_manifest.json", "calib_data": folder / "calib_set.npy",
                                  "stats": stats_path}
    info: dict = {"input_onnx": os.path.relpath(src, run.root), "calibration_frames": len(cs),
                  "gate_frames": len(gate_frames), "reference_faces": sum(len(d) for d in reference.detections),
                  "trt_version": trt_version, "trt_version_number": trt_number, "products": {}}
    failed = make_products(run, src, folder, methods, fp16, stats, cs.array(), cs.tensors(0, min(8, len(cs))),
                           recipe.input.name, trt_version,
                           lambda path, precision: accuracy_gate(recipe, path, gate_frames, precision, reference,
                                                                 cs.source_hashes, baseline_onnx=src),
                           step, f"{len(gate_frames)} held-out frames", artifacts, info)

    info["seconds"] = round(time.perf_counter() - t0, 1)
    run.record("calibrate", artifacts, info, recipe=recipe,
               inputs=fingerprint(recipe.hash, src, methods, fp16, [str(s) for s in sources], frames, eval_frames,
                                  trt_version, [str(v) for v in validation]))
    if failed:
        raise FbtoolError(f"accuracy gate failed for {failed[0]}",
                          "figures are in the manifest; try --method max/entropy, more --frames, or other --source clips")
    return info
