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


def _key(base: str, method: str, primary: str) -> str:
    return base if method == primary else f"{base}_{method}"


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
    from ..trt.calib_cache import ALGORITHMS, trt_version_number, write_cache
    from .fp16 import convert_fp16
    from .gate import accuracy_gate, check_held_out, reference_run
    from .qdq import quantize_int8
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

        return calibrate_landmarks(recipe, out, input_model(RunFolder(out)), RunFolder(out).root / CALIB_DIR, _key,
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
    failed: list[str] = []

    def gate(key: str, path: Path, precision: str, extra: dict, companion: str | None = None) -> None:
        step(f"gate {key} on {len(gate_frames)} held-out frames")
        try:
            g = accuracy_gate(recipe, path, gate_frames, precision, reference, cs.source_hashes, baseline_onnx=src)
        except BaseException:  # a gate that could not judge leaves no unjudged product behind
            path.unlink(missing_ok=True)
            if companion is not None:
                Path(artifacts.pop(companion)).unlink(missing_ok=True)
            raise
        info["products"][key] = {"file": path.name, "gate": g, **extra}
        if g["passed"]:
            artifacts[key] = path
        else:  # neither the model nor its scales (the cache) may be deployed
            path.unlink(missing_ok=True)
            if companion is not None:
                Path(artifacts.pop(companion)).unlink(missing_ok=True)
            failed.append(f"{key}: {'; '.join(g['failures'])}")

    primary = methods[0] if methods else ""
    for method in methods:
        cache = write_cache(folder / f"int8_calib_{method}.cache", stats.scales(method), trt_version,
                            ALGORITHMS[method])
        artifacts[_key("calib_cache", method, primary)] = cache
        qdq_path = run.file(f"{src.stem}_int8_{method}.onnx")
        step(f"INT8 Q/DQ ({method}, Model Optimizer)")
        q = quantize_int8(src, cs.array(), method, cache, qdq_path)
        gate(_key("int8_qdq", method, primary), qdq_path, f"int8-{method}", {"quantization": q},
             companion=_key("calib_cache", method, primary))
    if fp16:
        f16_path = run.file(f"{src.stem}_fp16.onnx")
        step("FP16 (AutoCast)")
        f = convert_fp16(src, cs.tensors(0, min(8, len(cs))), f16_path, stats, recipe.input.name)
        gate("fp16", f16_path, "fp16", {"autocast": f})

    info["seconds"] = round(time.perf_counter() - t0, 1)
    run.record("calibrate", artifacts, info, recipe=recipe,
               inputs=fingerprint(recipe.hash, src, methods, fp16, [str(s) for s in sources], frames, eval_frames,
                                  trt_version, [str(v) for v in validation]))
    if failed:
        raise FbtoolError(f"accuracy gate failed for {failed[0]}",
                          "figures are in the manifest; try --method max/entropy, more --frames, or other --source clips")
    return info
