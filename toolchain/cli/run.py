from __future__ import annotations

import time

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
@click.option("--force", is_flag=True, help="Redo every selected stage even if its inputs did not change.")
@click.pass_context
def command(ctx, recipe, out, start, stop, precision, engine_runtime, ds_version, ds_dir, force):
    """The main job: export -> surgery -> calibrate -> build-engine -> build-parser -> deepstream -> validate.

    Every artifact and the report land in one run folder with one manifest. A stage whose inputs
    (recipe, options, upstream artifacts) did not change is not redone.
    """
    from pathlib import Path

    from .. import chain
    from ..runfolder import RunFolder

    t0 = time.perf_counter()
    r = load(recipe)
    rpath = r.source
    ds_dir = ds_dir or str(Path(out) / "deepstream")
    options = {
        "export": {},
        "surgery": {},
        "calibrate": {},
        "build-engine": {"precision": precision, "runtime": engine_runtime},
        "build-parser": {"ds_major": "9" if ds_version.startswith("9") else "8"},
        "deepstream": {"precision": precision, "ds_version": ds_version, "ds_dir": ds_dir},
        "validate": {},
    }
    timings = []
    for stage in chain.select(start, stop):
        run = RunFolder(out)
        fp = chain.stage_fingerprint(run, r, stage, options[stage])
        if not force and chain.is_fresh(run, stage, fp):
            click.secho(f"{stage}: up to date, skipped", fg="cyan")
            timings.append((stage, "up to date", 0.0))
            continue
        if stage == "build-engine":
            ok, why = chain.tensorrt_status(engine_runtime)
            if not ok:
                click.secho(f"{stage}: skipped: {why}", fg="yellow")
                timings.append((stage, f"skipped: {why}", 0.0))
                continue
        click.secho(f"== {stage}", bold=True)
        t1 = time.perf_counter()
        cmd = ctx.parent.command.get_command(ctx, stage)
        ctx.invoke(cmd, recipe=rpath, out=out, **options[stage])
        chain.mark_done(out, stage, fp)
        timings.append((stage, "ran", time.perf_counter() - t1))
    click.echo("")
    for stage, what, secs in timings:
        click.echo(f"  {stage:<13} {what:<40} {secs:7.1f} s")
    success("run", t0, f"{out}/manifest.json, {out}/report.html")
