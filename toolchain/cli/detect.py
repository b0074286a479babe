from __future__ import annotations

import time

import click

from ._common import load, recipe_option, success


@click.command("detect")
@click.argument("source")
@recipe_option
@click.option("-o", "--output", required=True, help="Annotated output: .png/.jpg for a frame, .mp4 for a video.")
@click.option("--weights", type=click.Path(), default=None)
@click.option("--onnx", type=click.Path(), default=None, help="Run this ONNX with onnxruntime instead of PyTorch.")
@click.option("--max-frames", type=int, default=None)
@click.option("--json", "json_path", type=click.Path(), default=None, help="Also write detections as JSON lines.")
def command(source, recipe, output, weights, onnx, max_frames, json_path):
    """Find faces in an image or video; draw boxes, landmarks and contour masks."""
    from ..detect import detect

    t0 = time.perf_counter()
    info = detect(load(recipe), source, output, weights=weights, onnx=onnx, max_frames=max_frames,
                  json_path=json_path)
    success("detect", t0, f"{info['output']}: {info['faces']} faces in {info['frames']} frame(s) ({info['runner']})")
