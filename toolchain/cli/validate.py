from __future__ import annotations

import time

import click

from ._common import load, out_option, recipe_option, success

CANDIDATES = ["onnx", "surgered", "int8-qdq", "int8-qdq-max", "fp16", "engine", "nvinfer"]


@click.command("validate")
@recipe_option
@out_option
@click.option("--candidate", "only", multiple=True, type=click.Choice(CANDIDATES),
              help="Only these candidates (repeatable). Default: every one the run folder offers.")
@click.option("--onnx", "c_onnx", is_flag=True, help="Shortcut for --candidate onnx --candidate surgered.")
@click.option("--qdq", is_flag=True, help="Shortcut for the INT8 Q/DQ candidates.")
@click.option("--fp16", is_flag=True, help="Shortcut for the FP16 candidate.")
@click.option("--engine", is_flag=True, help="Shortcut for the TensorRT engine candidate.")
@click.option("--deepstream-config", "ds", is_flag=True, help="Shortcut for the nvinfer emulation candidate.")
@click.option("--media", multiple=True, help="Clips/images to validate on (default: the recipe's validation_media).")
@click.option("--frames-per-clip", default=6, show_default=True)
@click.option("--step", default=5, show_default=True, help="Frames between samples within a clip.")
@click.option("--pixel-frames", default=16, show_default=True, metavar="N",
              help="nvinfer candidate: blur the first N frames of each clip as the DeepStream blur app would "
                   "(tracker hold + fbtool's DeepStream blur) and judge them with the pixel proof and the audit "
                   "(0: off).")
def command(recipe, out, only, c_onnx, qdq, fp16, engine, ds, media, frames_per_clip, step, pixel_frames):
    """PyTorch reference vs every candidate on real frames; report.json + report.html; non-zero on breach."""
    from ..validate import validate

    t0 = time.perf_counter()
    chosen = set(only)
    chosen |= {"onnx", "surgered"} if c_onnx else set()
    chosen |= {"int8-qdq", "int8-qdq-max"} if qdq else set()
    chosen |= {"fp16"} if fp16 else set()
    chosen |= {"engine"} if engine else set()
    chosen |= {"nvinfer"} if ds else set()
    report = validate(load(recipe), out, only=chosen or None, per_clip=frames_per_clip, step=step,
                      media=list(media) or None, pixels=deepstream_pixels(pixel_frames))
    show(report, t0)


def deepstream_pixels(frames_per_clip: int):
    """validate's pixel check of the DeepStream blur app (the blur app floor, which validate may not import)."""
    if frames_per_clip <= 0:
        return None
    from ..blur.deepstream import verify_deepstream

    def pixels(recipe, config, clips):
        return verify_deepstream(recipe, config, clips, frames_per_clip=frames_per_clip)

    return pixels


def show(report: dict, t0: float) -> None:
    """The summary table; a breach (or nothing that could run) is an error."""
    from ..errors import FbtoolError
    from ..validate import breaches, summary_table

    click.echo(summary_table(report))
    bad = breaches(report)
    if bad:
        raise FbtoolError(bad[0] + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""),
                          f"see {report['files']['report_html']}")
    if not report["passed"]:
        raise FbtoolError("no candidate could run", "run `fbtool export` (or `fbtool run`) first")
    success("validate", t0, f"{report['files']['report_html']} ({len(report['frames'])} frames)")
