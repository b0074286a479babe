"""Candidates for validation: every runtime that can stand in for the PyTorch fp32 reference.

A candidate turns frames into per-frame Detections in frame coordinates (and, where its outputs
are the raw heads, the raw tensors for a tensor-level comparison). Each one says whether it can
run here and, if not, why: a skipped candidate is reported with its reason, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..runfolder import (
    BLUR_INFER_CONFIG,
    ENGINE,
    EXPORT_ONNX,
    FP16_ONNX,
    INFER_CONFIG,
    INT8_QDQ,
    INT8_QDQ_MAX,
    PARSER_LIB,
    SURGERY_ONNX,
    RunFolder,
)


@dataclass
class Candidate:
    name: str  # e.g. "onnx", "surgered", "int8-qdq", "fp16", "engine", "nvinfer"
    precision: str  # fp32 | fp16 | int8
    description: str
    make: Callable[[], Callable] | None  # () -> run(frames, batch) -> (dets, raw | None, objects | None)
    reason: str = "ok"  # why it cannot run, when make is None
    checks_masks: bool = False  # the nvinfer path emits masks from the compiled parser
    extra: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.make is not None


def recipe_for_artifact(recipe, onnx_path: Path):
    """The recipe as the artifact declares it: preprocessing is read from the ONNX's own metadata.

    A candidate runs the way it would be deployed, so an artifact exported with the wrong mean or
    colour order shows up as a detection breach instead of being silently fed correct inputs.
    """
    import dataclasses

    from ..onnx_meta import get_metadata
    from ..recipe import Preprocess

    meta = get_metadata(onnx_path)
    pre = meta.get("preprocess")
    if not pre:
        return recipe
    pre = dict(pre, mean=tuple(pre["mean"]))
    return dataclasses.replace(recipe, preprocess=Preprocess(**pre))


def check_io_contract(onnx_path: Path, recipe) -> None:
    """Raw-layout outputs must have the widths their names promise (catches swapped output names)."""
    import onnx

    from ..errors import FbtoolError

    model = onnx.load(str(onnx_path), load_external_data=False)
    o = recipe.outputs
    want = {o.boxes: 4, o.scores: len(recipe.labels) + 1}
    if o.landmarks:
        want[o.landmarks] = 2 * o.num_landmarks
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name in want and dims and dims[-1].dim_value and dims[-1].dim_value != want[out.name]:
            raise FbtoolError(f"{onnx_path.name}: output '{out.name}' has last dimension {dims[-1].dim_value}, "
                              f"expected {want[out.name]}", "are the output names swapped?")


def _runner_candidate(runner_factory, recipe):
    """A runner (infer(feed) -> dict) + the reference post-processing = a candidate."""

    def make():
        runner = runner_factory()

        def run(frames, batch):
            from ..detector import detect_frames

            raw: list[dict[str, np.ndarray]] = []
            return detect_frames(frames, recipe, runner, batch=batch, raw=raw), raw, None

        return run

    return make


def _onnx(name, precision, desc, path: Path | None, recipe, missing: str) -> Candidate:
    if path is None:
        return Candidate(name, precision, desc, None, missing)
    from ..runners import available, open_runner

    ok, why = available("onnxruntime")
    if not ok:
        return Candidate(name, precision, desc, None, why)

    def factory():
        check_io_contract(path, recipe)
        return open_runner("onnxruntime", path)

    return Candidate(name, precision, desc, _runner_candidate(factory, recipe_for_artifact(recipe, path)),
                     extra={"path": str(path)})


def _engine(run: RunFolder, recipe) -> Candidate:
    desc = "TensorRT engine (build-engine)"
    path = run.get(ENGINE)
    if path is None:
        return Candidate("engine", "fp32", desc, None, "no engine in the run folder (`fbtool doctor build-engine` says why and how to build one)")
    info = (run.stage("build-engine") or {}).get("info", {})
    precision = info.get("precision", "fp32")
    runtime = info.get("runtime", "tensorrt")
    desc = f"{info.get('target', runtime)} engine ({precision})"
    from ..runners import available, open_runner

    ok, why = available(runtime)
    if not ok:
        if runtime == "tensorrt-rtx":
            why = f"a TensorRT-RTX engine runs on RTX/Ampere GPUs only (CC 8.0/8.6/8.9/12.x): {why}"
        return Candidate("engine", precision, desc, None, why)
    return Candidate("engine", precision, desc, _runner_candidate(lambda: open_runner(runtime, path), recipe),
                     extra={"path": str(path)})


def _nvinfer(run: RunFolder, recipe) -> Candidate:
    desc = "nvinfer emulation: emitted config + compiled C++ parser (real C ABI) + clustering"
    config = run.get(INFER_CONFIG)
    if config is None:
        return Candidate("nvinfer", "fp32", desc, None, "no nvinfer config in the run folder (run `fbtool deepstream`)")
    lib = run.get(PARSER_LIB)
    if lib is None:
        return Candidate("nvinfer", "fp32", desc, None, "no compiled parser in the run folder (run `fbtool build-parser`)")
    try:
        from ..nvinfer.emulation import NvInferEmulator
    except ImportError as exc:
        return Candidate("nvinfer", "fp32", desc, None, f"nvinfer emulation unavailable: {exc}")

    def make():
        from ..nvinfer.emulation import to_detections
        from ..nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH

        # nvinfer receives the streammux frame (every source stretched to it), whose size the parser
        # is built for: the emulation takes the same path, objects come back on the clip's frame
        emu = NvInferEmulator(config, parser="compiled", mux=(STREAMMUX_WIDTH, STREAMMUX_HEIGHT))

        def run_frames(frames, batch):
            objects = emu.infer(frames)  # batches by the config's batch-size, as nvinfer does
            dets = [to_detections(o, f.shape[1], f.shape[0]) for o, f in zip(objects, frames)]
            return dets, None, objects

        return run_frames

    blur_config = run.get(BLUR_INFER_CONFIG)  # the blur app's (recall-first threshold), for the pixel check
    return Candidate("nvinfer", "fp32", desc, make, checks_masks=True,
                     extra={"config": str(config), "blur_config": str(blur_config) if blur_config else None})


def discover(run: RunFolder, recipe, only: set[str] | None = None) -> list[Candidate]:
    """Every candidate the run folder can offer, available or not (with the reason)."""
    a = run.get
    cands = [
        _onnx("onnx", "fp32", "exported ONNX on onnxruntime", a(EXPORT_ONNX), recipe,
              "no exported ONNX (run `fbtool export`)"),
        _onnx("surgered", "fp32", "surgered ONNX on onnxruntime", a(SURGERY_ONNX), recipe,
              "no surgered ONNX (run `fbtool surgery`)"),
        _onnx("int8-qdq", "int8", "INT8 Q/DQ ONNX (entropy) on onnxruntime", a(INT8_QDQ), recipe,
              "no Q/DQ ONNX (run `fbtool calibrate`)"),
        _onnx("int8-qdq-max", "int8", "INT8 Q/DQ ONNX (max) on onnxruntime", a(INT8_QDQ_MAX), recipe,
              "no max-calibrated Q/DQ ONNX"),
        _onnx("fp16", "fp16", "FP16 (AutoCast) ONNX on onnxruntime", a(FP16_ONNX), recipe,
              "no FP16 ONNX (run `fbtool calibrate`)"),
        _engine(run, recipe),
        _nvinfer(run, recipe),
    ]
    if only:
        unknown = only - {c.name for c in cands}
        if unknown:
            from ..errors import FbtoolError

            raise FbtoolError(f"unknown candidate {sorted(unknown)[0]!r}",
                              f"choose from {', '.join(c.name for c in cands)}")
        cands = [c for c in cands if c.name in only]
    return cands


