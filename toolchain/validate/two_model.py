"""validate's two-model section: the DeepStream deployment of a two-model recipe (detector nvinfer ->
box squaring -> FaceMesh SGIE -> contour component), emulated, against the Python two-model reference.

Reported, not gated: the recipe holds no two-model tolerance yet, and DeepStream's geometry differs
from the reference by design (nvinfer cannot turn a crop; nvdsosd blurs on 32x32 cells). The figures
are given twice: against the recipe's reference (rotate as the recipe says) and against the same
reference with rotation off (what DeepStream can do), which isolates the emulated arithmetic.
"""

from __future__ import annotations

import dataclasses

from ..runfolder import INFER_CONFIG, PARSER_LIB, SGIE_CONFIG, RunFolder


def two_model_section(recipe, run: RunFolder, frames, ref_dets, parser="compiled") -> dict | None:
    """None for a one-model recipe; else {"status": "info"|"skipped", ...figures or reason}."""
    if recipe.contour.model is None:
        return None
    config, sgie = run.get(INFER_CONFIG), run.get(SGIE_CONFIG)
    if config is None or sgie is None:
        return {"status": "skipped", "reason": "no SGIE config in the run folder (run `fbtool deepstream`)"}
    if parser == "compiled" and run.get(PARSER_LIB) is None:
        return {"status": "skipped", "reason": "no compiled parser in the run folder (run `fbtool build-parser`)"}
    from ..compare.two_model import judge, run_deployed
    from ..contours import contours_frame
    from ..nvinfer.emulation import NvInferEmulator
    from ..nvinfer.emulation.secondary import SecondaryEmulator
    from ..nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH
    from ..recipe import landmark_recipe
    from ..runners import TorchRunner

    fm = landmark_recipe(recipe)
    mux = (STREAMMUX_WIDTH, STREAMMUX_HEIGHT)
    pgie = NvInferEmulator(config, parser=parser, mux=mux)
    # the components' parameters as the deepstream stage recorded them (deepstream/secondary.py)
    params = (run.stage("deepstream") or {}).get("info", {}).get("sgie", {}).get("components")
    if params is None:
        return {"status": "skipped", "reason": "the deepstream stage recorded no contour parameters (run `fbtool deepstream`)"}
    sgie = SecondaryEmulator(sgie, params)  # onnxruntime on the SGIE's onnx-file
    deployed = run_deployed(frames, pgie, sgie, mux)
    torch_fm = TorchRunner(fm)
    out = {"status": "info", "sgie_config": str(run.get(SGIE_CONFIG)), "runner": "onnxruntime (SGIE onnx-file)"}
    for name, rotate in (("vs_reference", recipe.contour.rotate), ("vs_unrotated_reference", False)):
        spec = dataclasses.replace(recipe.contour, rotate=rotate)
        refs = [contours_frame(f, d.boxes, d.landmarks, spec, fm, torch_fm) for f, d in zip(frames, ref_dets)]
        out[name] = judge(frames, ref_dets, refs, deployed, recipe.contour.presence, mux).summary()
    return out


def summary_lines(tm: dict) -> list[str]:
    """The two-model lines under validate's table."""
    if tm["status"] == "skipped":
        return [f"two-model DeepStream path: skipped: {tm['reason']}"]
    out = ["two-model DeepStream path (emulated; reported, not gated):"]
    for name, label in (("vs_reference", "vs the recipe's reference"), ("vs_unrotated_reference", "vs it unrotated")):
        s = tm[name]
        if s["landmark_px_mean"] is None:
            out.append(f"  {label}: no face contoured by both ({s['faces']} faces)")
            continue
        out.append(f"  {label}: {s['both_face']}/{s['faces']} faces contoured by both, landmarks mean "
                   f"{s['landmark_px_mean']:.2f} / max {s['landmark_px_max']:.2f} px, contour mask IoU mean "
                   f"{s['mask_iou_mean']:.3f} / min {s['mask_iou_min']:.3f}; fallback differs on "
                   f"{s['ref_only'] + s['deployed_only']}")
    return out
