from __future__ import annotations

import time

import click

from ._common import load, out_option, recipe_option, success


@click.command("build-engine")
@recipe_option
@out_option
@click.option("--precision", type=click.Choice(["int8", "fp16", "fp32", "best"]), default="fp16", show_default=True,
              help="best = the lowest precision the run folder's artifacts allow (resolved, never 'best' on disk).")
@click.option("--runtime", type=click.Choice(["tensorrt", "tensorrt-rtx"]), default="tensorrt", show_default=True)
@click.option("--trt-major", type=click.Choice(["10", "11"]), default=None,
              help="Decide as for this TensorRT major (with --dry-run where TensorRT is absent).")
@click.option("--int8-mode", type=click.Choice(["qdq", "implicit"]), default="qdq", show_default=True,
              help="qdq: the Q/DQ ONNX from `fbtool calibrate`; implicit: TensorRT 10 calibrator + cache.")
@click.option("--fp16-mode", type=click.Choice(["auto", "autocast", "flag"]), default="auto", show_default=True,
              help="autocast: the fp16 ONNX from `fbtool calibrate`; flag: BuilderFlag.FP16 (TensorRT 10).")
@click.option("--workspace-mb", type=int, default=1024, show_default=True)
@click.option("--opt-level", type=click.IntRange(0, 5), default=3, show_default=True,
              help="Builder optimization level.")
@click.option("--version-compatible", is_flag=True, help="Runs on later TensorRT and on the lean runtime.")
@click.option("--hardware-compat", type=click.Choice(["none", "ampere-plus", "same-cc"]), default="none",
              show_default=True)
@click.option("--gpu-id", type=int, default=0, show_default=True)
@click.option("--rtx-target", "rtx_targets", multiple=True, metavar="SM86",
              help="TensorRT-RTX compute capability target (repeatable). Default: the GPU's, else SM86.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="Timing cache file (default: $FBTOOL_CACHE/trt-timing/<runtime>-<version>-<sm>.cache).")
@click.option("--dry-run", is_flag=True, help="Print the decisions; needs no TensorRT, writes nothing.")
def command(recipe, out, precision, runtime, trt_major, int8_mode, fp16_mode, workspace_mb, opt_level,
            version_compatible, hardware_compat, gpu_id, rtx_targets, timing_cache, dry_run):
    """ONNX -> TensorRT engine named as DeepStream's nvinfer names it, plus its manifest."""
    from ..engine.build import BuildOptions, build_engine

    t0 = time.perf_counter()
    opts = BuildOptions(precision=precision, runtime=runtime, trt_major=int(trt_major) if trt_major else None,
                        int8_mode=int8_mode, fp16_mode=fp16_mode, workspace_mb=workspace_mb, opt_level=opt_level,
                        version_compatible=version_compatible, hardware_compat=hardware_compat, gpu_id=gpu_id,
                        rtx_targets=tuple(rtx_targets), timing_cache=timing_cache, dry_run=dry_run)
    info = build_engine(load(recipe), out, opts)
    show(info, t0)


def show(info: dict, t0: float) -> None:
    plan, prof = info["plan"], info["profile"]
    click.echo(f"  target     {info['target']}" + (f" ({', '.join(info['targets'])})" if info["targets"] else ""))
    click.echo(f"  onnx       {info['onnx']}")
    click.echo(f"  precision  {plan['requested']} -> {plan['precision']} via {plan['route']} "
               f"(strongly typed: {plan['strongly_typed']}, flags: {','.join(plan['builder_flags']) or 'none'}"
               f"{', calibrator' if plan['calibrator'] else ''})")
    click.echo(f"  profile    {prof['input']} min {prof['min']} opt {prof['opt']} max {prof['max']}")
    for note in plan["notes"]:
        click.echo(f"  note       {note}")
    if info.get("dry_run"):
        success("build-engine", t0, f"dry run, would write {info['engine']}")
        return
    success("build-engine", t0, f"{info['engine']} ({info['bytes'] / 1e6:.2f} MB, built in {info['seconds']:.2f} s)")
