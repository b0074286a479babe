from __future__ import annotations

import time

import click

from ._common import load, out_option, recipe_option, success


@click.command("calibrate")
@recipe_option
@out_option
@click.option("--method", type=click.Choice(["entropy", "max", "both"]), default="entropy", show_default=True,
              help="INT8 activation calibration (both: two Q/DQ models and two caches; entropy is the primary).")
@click.option("--fp16/--no-fp16", default=True, show_default=True, help="Also make the AutoCast FP16 model.")
@click.option("--no-int8", is_flag=True, help="Skip INT8 (only FP16).")
@click.option("--source", "sources", multiple=True, metavar="FILE",
              help="Calibration image/GIF/MP4 (repeatable). Default: the recipe's calibration_media.")
@click.option("--eval-source", "eval_sources", multiple=True, metavar="FILE",
              help="Held-out clip for the accuracy gate (repeatable). Default: the recipe's validation_media.")
@click.option("--frames", type=click.IntRange(1, 4096), default=64, show_default=True, help="Calibration frames.")
@click.option("--eval-frames", type=click.IntRange(1, 4096), default=40, show_default=True,
              help="Held-out validation frames for the accuracy gate.")
@click.option("--trt-version", default="10.3", show_default=True,
              help="TensorRT version the legacy cache is for (10.3 = DeepStream 7.1; 10.16 = DeepStream 9.1).")
def command(recipe, out, method, fp16, no_int8, sources, eval_sources, frames, eval_frames, trt_version):
    """INT8 (Model Optimizer Q/DQ + TensorRT cache) and FP16 (AutoCast) models, gated against PyTorch fp32."""
    from ..calibrate.pipeline import calibrate

    t0 = time.perf_counter()
    methods = [] if no_int8 else (["entropy", "max"] if method == "both" else [method])
    info = calibrate(load(recipe), out, methods=methods, fp16=fp16, sources=list(sources) or None, frames=frames,
                     eval_frames=eval_frames, trt_version=trt_version,
                     validation=list(eval_sources) or None)
    show(info, out, t0)


def show(info: dict, out, t0: float) -> None:
    if info.get("unit") == "face crops":  # a landmark model (FaceMesh)
        click.echo(f"  gate vs PyTorch fp32 on {info['gate_frames']} held-out face crops")
        for key, p in info["products"].items():
            g = p["gate"]
            click.secho(f"  {key:<13} landmarks mean {g['mean_landmark_px']:.3f} / max {g['max_landmark_px']:.2f} px "
                        f"(192-px crop)  oval IoU mean {g['mean_oval_iou']:.4f} / min {g['min_oval_iou']:.4f}  presence "
                        f"agreement {g['presence_agreement']:.3f}  {'PASS' if g['passed'] else 'FAIL: deleted'}",
                        fg=None if g["passed"] else "yellow")
        success("calibrate", t0, f"{info['calibration_frames']} calibration crops, gate on {info['gate_frames']} "
                f"held-out crops; {', '.join(k for k, p in info['products'].items() if p['gate']['passed'])} in {out}")
        return
    click.echo(f"  gate vs PyTorch fp32 on {info['gate_frames']} held-out frames ({info['reference_faces']} faces; "
               "validate judges its own frame set, so its figures differ)")
    for key, p in info["products"].items():
        g = p["gate"]
        click.echo(f"  {key:<13} F1 {g['f1']:.4f}  mean IoU {g['mean_iou']:.4f}  landmarks mean "
                   f"{g['mean_landmark_px']:.2f} / max {g['max_landmark_px']:.2f} px"
                   f"  max score delta {g['max_score_delta']:.3f}  ({g['tp']} tp, {g['fp']} fp, {g['fn']} fn)")
    success("calibrate", t0, f"{info['calibration_frames']} calibration frames, gate on {info['gate_frames']} "
            f"held-out frames; {', '.join(info['products'])} in {out}")
