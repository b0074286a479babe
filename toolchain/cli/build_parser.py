from __future__ import annotations

import os
import time

import click

from ._common import load, out_option, recipe_option, success

# Where the model's own metadata can be read from, newest stage first (the model file is the
# source of truth once it exists; the recipe before that).
ONNX_ARTIFACTS = (("surgery", "onnx"), ("export", "onnx"))


@click.command("build-parser")
@recipe_option
@out_option
@click.option("--deepstream-root", default=None, metavar="DIR", envvar="DEEPSTREAM_ROOT",
              help="DeepStream install holding sources/includes (default /opt/nvidia/deepstream/deepstream; "
                   "when absent, fbtool's own ABI header is used).")
@click.option("--ds-major", type=click.Choice(["8", "9"]), default="9", show_default=True,
              help="Object layout for the own ABI header: 8 = DeepStream 8.0 (24 B), 9 = 9.x (28 B). "
                   "With DeepStream's headers their layout applies.")
@click.option("--force", is_flag=True, help="Rebuild even when the sources and parameters did not change.")
def command(recipe, out, deepstream_root, ds_major, force):
    """Build the nvinfer custom parser (bbox + face-contour instance mask) with g++."""
    from ..nvinfer.names import PARSE_BBOX_FUNC, PARSE_MASK_FUNC
    from ..onnx_meta import get_metadata
    from ..parser.build import build_parser
    from ..runfolder import RunFolder, fingerprint

    t0 = time.perf_counter()
    r = load(recipe)
    run = RunFolder(out)
    meta, source = None, "recipe"
    for stage, key in ONNX_ARTIFACTS:
        onnx_path = run.artifact(stage, key, required=False)
        if onnx_path is not None:
            meta, source = get_metadata(onnx_path), f"{stage}:{os.path.relpath(onnx_path, run.root)}"
            break
    # --deepstream-root given (or DEEPSTREAM_ROOT set) must hold the headers; the default may not.
    b = build_parser(r, out, deepstream_root=deepstream_root, ds_major=int(ds_major), meta=meta, force=force)
    run.record("build-parser", {"lib": b.lib, "harness": b.harness, "params_header": b.params_header},
               {"header": b.header, "ds_major": b.ds_major, "symbols": b.symbols, "params_source": source,
                "rebuilt": b.rebuilt, "parse_bbox_func": PARSE_BBOX_FUNC, "parse_instance_mask_func": PARSE_MASK_FUNC},
               inputs=fingerprint(b.fingerprint), recipe=r)
    click.echo(f"  ABI header: {b.header} (DeepStream {'headers' if b.header == 'deepstream' else f'{ds_major}.x layout'})"
               f", parameters from {source}")
    click.echo(f"  exported: {', '.join(b.symbols)}")
    success("build-parser", t0, f"{b.lib} ({'rebuilt' if b.rebuilt else 'up to date'})")
