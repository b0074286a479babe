"""The build-parser stage: build the parser for the run folder's model and record it in the manifest."""

from __future__ import annotations

import os

from ..runfolder import MODEL_ONNX, RunFolder, fingerprint
from .build import ParserBuild, build_parser


def build_stage(recipe, out, deepstream_root: str | os.PathLike | None = None, ds_major: int = 9,
                force: bool = False, dsblur: bool = False) -> tuple[ParserBuild, str]:
    """Build the parser with the model's own metadata and record it in the run folder.

    The model file is the source of truth once it exists (the run's model ONNX: surgery's, else
    export's); the recipe before that. An explicit `deepstream_root` must hold DeepStream's headers.
    `dsblur`: also build fbtool's DeepStream blur library (parser/dsblur.py; a DeepStream host), whose
    prerequisites are checked before anything is built.
    Returns the build and where the parameters came from.
    """
    from ..nvinfer.names import PARSE_BBOX_FUNC, PARSE_MASK_FUNC
    from ..onnx_meta import get_metadata

    run = RunFolder(out)
    meta, source = None, "recipe"
    for art in MODEL_ONNX:
        onnx_path = run.get(art)
        if onnx_path is not None:
            meta, source = get_metadata(onnx_path), f"{art.stage}:{os.path.relpath(onnx_path, run.root)}"
            break
    pre = None
    if dsblur:
        from .dsblur import prerequisites

        pre = prerequisites(deepstream_root)
    b = build_parser(recipe, out, deepstream_root=deepstream_root, ds_major=ds_major, meta=meta, force=force)
    artifacts = {"lib": b.lib, "harness": b.harness, "params_header": b.params_header}
    if pre is not None:
        from .dsblur import build_dsblur

        artifacts["dsblur_lib"] = build_dsblur(out, deepstream_root, pre)
    run.record("build-parser", artifacts,
               {"header": b.header, "ds_major": b.ds_major, "symbols": b.symbols, "params_source": source,
                "rebuilt": b.rebuilt,
                # the streammux frame the parser clips boxes for (the deepstream stage checks it)
                "frame": [b.params["frame_width"], b.params["frame_height"]], "parse_bbox_func": PARSE_BBOX_FUNC, "parse_instance_mask_func": PARSE_MASK_FUNC},
               inputs=fingerprint(b.fingerprint), recipe=recipe)
    return b, source
