from __future__ import annotations

import time

import click

from ._common import load, out_option, recipe_option, success


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
@click.option("--dsblur", is_flag=True,
              help="Also build fbtool's DeepStream blur library (nvdsvideotemplate; held faces, fbtool's blur kernel). "
                   "Needs a DeepStream host: its headers and libraries, nvcc.")
def command(recipe, out, deepstream_root, ds_major, force, dsblur):
    """Build the nvinfer custom parser (bbox + face-contour instance mask) with g++."""
    from ..parser.stage import build_stage

    t0 = time.perf_counter()
    # --deepstream-root given (or DEEPSTREAM_ROOT set) must hold the headers; the default may not.
    b, source = build_stage(load(recipe), out, deepstream_root=deepstream_root, ds_major=int(ds_major), force=force,
                            dsblur=dsblur)
    if dsblur:
        from ..runfolder import DSBLUR_LIB, RunFolder

        click.echo(f"  DeepStream blur library: {RunFolder(out).get(DSBLUR_LIB)}")
    show(b, source, t0)


def show(b, source: str, t0: float) -> None:
    click.echo(f"  ABI header: {b.header} (DeepStream {'headers' if b.header == 'deepstream' else f'{b.ds_major}.x layout'})"
               f", parameters from {source}")
    click.echo(f"  exported: {', '.join(b.symbols)}")
    success("build-parser", t0, f"{b.lib} ({'rebuilt' if b.rebuilt else 'up to date'})")
