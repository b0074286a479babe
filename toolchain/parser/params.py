"""The parser's model parameters, generated as a C++ header from ONE source of truth.

`fbtool_model_params.h` is written from the ONNX metadata (`fbtool.*` props, the model file is the
truth once exported) or, before export, from the recipe. The C++ parser includes it; nothing in
plugins/ repeats a step, an anchor size, a variance, a layer name or a mask setting.
"""

from __future__ import annotations

import json
import re

from ..errors import FbtoolError
from ..nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH

HEADER_NAME = "fbtool_model_params.h"
# Decode-in-graph outputs (surgery's pass). Overridable through ONNX metadata `decoded_outputs`.
DECODED_OUTPUTS = {"boxes": "det_boxes", "scores": "det_scores", "landmarks": "det_landmarks"}


def model_params(recipe, meta: dict | None = None, source: str | None = None) -> dict:
    """Everything the parser needs, from ONNX metadata when given (checked against the recipe)."""
    d = recipe.to_dict()
    if meta:
        if meta.get("recipe_hash") not in (None, recipe.hash):
            raise FbtoolError(
                f"the ONNX model was exported from another recipe (hash {meta.get('recipe_hash')}, "
                f"recipe {recipe.name} is {recipe.hash})",
                "export again with this recipe, or pass the recipe the model was made from")
        for key in ("input", "preprocess", "anchors", "thresholds", "mask"):
            if isinstance(meta.get(key), dict):
                d[key] = {**d[key], **meta[key]}
        if meta.get("labels"):
            d["labels"] = list(meta["labels"])
    decoded = dict(DECODED_OUTPUTS)
    mo = (meta or {}).get("outputs")
    if isinstance(mo, dict):
        # After decode-in-graph surgery, fbtool.outputs names the decoded tensors; the raw names
        # (still read by the parser for raw engines) stay the recipe's.
        if (meta or {}).get("output_layout") == "decoded":
            decoded.update({k: mo[k] for k in decoded if mo.get(k)})
        else:
            d["outputs"] = {**d["outputs"], **{k: v for k, v in mo.items() if k in d["outputs"]}}
    a, o, m = d["anchors"], d["outputs"], d["mask"]
    params = {
        "recipe": recipe.name,
        "recipe_hash": recipe.hash,
        "source": source or ("onnx-metadata" if meta else "recipe"),
        "output_layout": (meta or {}).get("output_layout", "raw"),
        "width": int(d["input"]["width"]),
        "height": int(d["input"]["height"]),
        # The frame nvinfer receives in the deployment (the streammux output) and how nvinfer scales it
        # into the network input: the parser clips boxes to the frame's part of the input.
        "frame_width": STREAMMUX_WIDTH,
        "frame_height": STREAMMUX_HEIGHT,
        "letterbox": bool(d["preprocess"]["letterbox"]),
        "symmetric_padding": bool(d["preprocess"]["symmetric_padding"]),
        "steps": [int(s) for s in a["steps"]],
        "min_sizes": [[float(x) for x in row] for row in a["min_sizes"]],
        "variance": [float(v) for v in a["variance"]],
        "clip": bool(a["clip"]),
        "outputs": {"boxes": o["boxes"], "scores": o["scores"], "landmarks": o.get("landmarks")},
        "decoded_outputs": decoded,
        "num_landmarks": int(o.get("num_landmarks", 0)) if o.get("landmarks") else 0,
        "score_threshold": float(d["thresholds"]["score"]),
        "nms_iou": float(d["thresholds"]["nms_iou"]),
        "pre_nms_top_k": int(d["thresholds"]["pre_nms_top_k"]),
        "top_k": int(d["thresholds"]["top_k"]),
        "mask_resolution": int(m["resolution"]),
        "mask_feather": float(m["feather"]),
        "max_tilt_deg": float(m["max_tilt_deg"]),
        "num_classes": len(d["labels"]),
    }
    _check(params)
    return params


def _check(p: dict) -> None:
    if len(p["steps"]) != len(p["min_sizes"]) or not p["steps"]:
        raise FbtoolError("anchors.steps and anchors.min_sizes disagree", "one list of sizes per step")
    if any(s <= 0 for s in p["steps"]) or any(not row for row in p["min_sizes"]):
        raise FbtoolError("anchors.steps must be positive and every level needs a min size")
    if not 0 < p["mask_feather"]:
        raise FbtoolError(f"mask.feather must be > 0, got {p['mask_feather']}")
    names = [v for v in list(p["outputs"].values()) + list(p["decoded_outputs"].values()) if v]
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9_.:/\-]+", n):
            raise FbtoolError(f"output name {n!r} cannot go into the parser header", "use [A-Za-z0-9_.:/-]")


def _c_str(s: str | None) -> str:
    return "nullptr" if s is None else json.dumps(s)


def _c_double(x: float) -> str:
    r = repr(float(x))  # shortest round-trip form: the C++ double equals Python's float exactly
    return r if any(c in r for c in ".en") else r + ".0"


def render_header(p: dict) -> str:
    begins = [0]
    for row in p["min_sizes"]:
        begins.append(begins[-1] + len(row))
    flat = [x for row in p["min_sizes"] for x in row]
    o, dec = p["outputs"], p["decoded_outputs"]
    lines = [
        f"// Generated by `fbtool build-parser` from {p['source']} (recipe {p['recipe']}, hash {p['recipe_hash']}).",
        "// Do not edit: change the recipe (or re-export the model) and run build-parser again.",
        "#pragma once",
        f"#define FBTOOL_PARAMS_RECIPE {_c_str(p['recipe'])}",
        f"#define FBTOOL_PARAMS_RECIPE_HASH {_c_str(p['recipe_hash'])}",
        "namespace fbtool_params {",
        f"constexpr unsigned kDefaultWidth = {p['width']};",
        f"constexpr unsigned kDefaultHeight = {p['height']};",
        "// The frame nvinfer receives (the deployment's nvstreammux width x height) and its letterbox.",
        f"constexpr unsigned kFrameWidth = {p['frame_width']};",
        f"constexpr unsigned kFrameHeight = {p['frame_height']};",
        f"constexpr bool kLetterbox = {'true' if p['letterbox'] else 'false'};",
        f"constexpr bool kSymmetricPadding = {'true' if p['symmetric_padding'] else 'false'};",
        f"constexpr unsigned kNumLevels = {len(p['steps'])};",
        f"constexpr unsigned kSteps[kNumLevels] = {{{', '.join(str(s) for s in p['steps'])}}};",
        f"constexpr unsigned kMinSizeBegin[kNumLevels + 1] = {{{', '.join(str(b) for b in begins)}}};",
        f"constexpr double kMinSizes[{len(flat)}] = {{{', '.join(_c_double(x) for x in flat)}}};",
        f"constexpr double kVariance0 = {_c_double(p['variance'][0])};",
        f"constexpr double kVariance1 = {_c_double(p['variance'][1])};",
        f"constexpr bool kClip = {'true' if p['clip'] else 'false'};",
        f"constexpr const char* kBoxesLayer = {_c_str(o['boxes'])};",
        f"constexpr const char* kScoresLayer = {_c_str(o['scores'])};",
        f"constexpr const char* kLandmarksLayer = {_c_str(o['landmarks'])};",
        f"constexpr unsigned kNumLandmarks = {p['num_landmarks']};",
        f"constexpr const char* kDecodedBoxesLayer = {_c_str(dec['boxes'])};",
        f"constexpr const char* kDecodedScoresLayer = {_c_str(dec['scores'])};",
        f"constexpr const char* kDecodedLandmarksLayer = {_c_str(dec['landmarks'] if o['landmarks'] else None)};",
        f"constexpr float kDefaultScoreThreshold = static_cast<float>({_c_double(p['score_threshold'])});",
        "// Instance-mask parser only: nvinfer clusters nothing for network-type=3 (cluster-mode=4).",
        f"constexpr double kNmsIou = {_c_double(p['nms_iou'])};",
        f"constexpr int kPreNmsTopK = {p['pre_nms_top_k']};",
        f"constexpr int kTopK = {p['top_k']};",
        f"constexpr unsigned kMaskResolution = {p['mask_resolution']};",
        f"constexpr double kMaskFeather = {_c_double(p['mask_feather'])};",
        f"constexpr double kMaxTiltDeg = {_c_double(p['max_tilt_deg'])};",
        f"constexpr unsigned kNumClasses = {p['num_classes']};",
        "}  // namespace fbtool_params",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    """`python -m toolchain.parser.params [--recipe R] DIR`: write the header alone (fuzz builds)."""
    import argparse

    from ..fsutil import write_text
    from ..recipe import load_recipe

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--recipe", default=None)
    ap.add_argument("dir")
    a = ap.parse_args(argv)
    from pathlib import Path

    print(write_text(Path(a.dir) / HEADER_NAME, render_header(model_params(load_recipe(a.recipe)))))


if __name__ == "__main__":
    main()
