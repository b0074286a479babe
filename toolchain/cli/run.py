from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import load, out_option, recipe_option, success


@click.command("run")
@recipe_option
@out_option
@click.option("--from", "start", default=None, metavar="STAGE", help="First stage to run (default: export).")
@click.option("--to", "stop", default=None, metavar="STAGE", help="Last stage to run (default: validate).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="Precision of the engine and the nvinfer config.")
@click.option("--engine-runtime", type=click.Choice(["tensorrt", "tensorrt-rtx"]), default="tensorrt",
              show_default=True, help="Builder for the build-engine stage (tensorrt-rtx builds on a CPU).")
@click.option("--deepstream", "ds_version", type=click.Choice(["7.1", "8.0", "9.0", "9.1"]), default="9.1",
              show_default=True)
@click.option("--ds-dir", default=None, help="Where the DeepStream files go (default: <out>/deepstream).")
@click.option("--pixel-frames", default=16, show_default=True, metavar="N",
              help="validate: blur the first N frames of each clip as the DeepStream blur app would and judge "
                   "them with the pixel proof and the audit (0: off), as `fbtool validate` does.")
@click.option("--force", is_flag=True, help="Redo every selected stage even if its inputs did not change.")
def command(recipe, out, start, stop, precision, engine_runtime, ds_version, ds_dir, pixel_frames, force):
    """The main job: export -> surgery -> calibrate -> build-engine -> build-parser -> deepstream -> validate.

    Every artifact and the report land in one run folder with one manifest. A stage whose inputs
    (recipe, options, upstream artifacts) did not change is not redone.
    """
    from .. import chain
    from . import validate

    t0 = time.perf_counter()
    options = chain.RunOptions(precision=precision, engine_runtime=engine_runtime, ds_version=ds_version,
                               ds_dir=ds_dir, validate_pixels=validate.deepstream_pixels(pixel_frames))
    steps = chain.run(load(recipe), out, options, start, stop, force, on_step=_printer(out, options))
    click.echo("")
    for s in steps:
        what = s.why.split(";")[0][:62]  # the full reason (and how to make it run) was printed above
        name = f"{s.model}/{s.stage}" if s.model else s.stage
        click.echo(f"  {name:<22} {what:<62} {s.seconds:7.1f} s")
    reports = [p for p in dict.fromkeys(Path(out) / s.model / "report.html" for s in steps) if p.is_file()]
    success("run", t0, f"{out}/manifest.json" + "".join(f", {r}" for r in reports))


def _printer(out, options):
    """Print each stage as its own command does."""
    from ..surgery.stage import DEFAULT_NAME
    from . import build_engine, build_parser, calibrate, deepstream, export, surgery, validate

    root = out

    def on_step(event: str, step) -> None:
        out = Path(root) / step.model if step.model else root
        name = f"{step.model}: {step.stage}" if step.model else step.stage
        if event == "skip":
            up = step.why == "up to date"
            click.secho(f"{name}: {'up to date, skipped' if up else step.why}", fg="cyan" if up else "yellow")
        elif event == "start":
            click.secho(f"== {name}", bold=True)
        else:
            t0 = time.perf_counter() - step.seconds
            r = step.result
            {"export": lambda: export.show(r, out, t0),
             "surgery": lambda: surgery.show(r, out, DEFAULT_NAME, t0),
             "calibrate": lambda: calibrate.show(r, out, t0),
             "build-engine": lambda: build_engine.show(r, t0),
             "build-parser": lambda: build_parser.show(*r, t0),
             "deepstream": lambda: deepstream.show(r, options.precision, options.ds_version, t0),
             "validate": lambda: validate.show(r, t0)}[step.stage]()

    return on_step
