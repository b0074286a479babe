from __future__ import annotations

import time

import click

from ._common import load, out_option, recipe_option, success


@click.command("export")
@recipe_option
@out_option
@click.option("--weights", type=click.Path(), default=None, help="Weights file (default: the recipe's, from the store).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True)
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18 for dynamo, recipe's for torchscript).")
@click.option("--no-check", is_flag=True, help="Skip the onnxruntime-vs-PyTorch parity check.")
def command(recipe, out, weights, exporter, opset, no_check):
    """PyTorch -> ONNX (dynamic batch, metadata), parity with PyTorch checked on real frames."""
    from ..export import export

    t0 = time.perf_counter()
    r = load(recipe)
    info = export(r, out, weights=weights, exporter=exporter, opset=opset, check=not no_check)
    show(info, out, t0)


def show(info: dict, out, t0: float) -> None:
    for row in info.get("parity", []):
        click.echo(f"  parity batch {row['batch']} {row['output']:<10} max abs {row['max_abs']:.2e}"
                   f"  max rel {row['max_rel']:.2e}")
    success("export", t0, f"{out}/model.onnx ({info['bytes'] / 1e6:.2f} MB, {info['nodes']} nodes, "
            f"{info['exporter']} opset {info['opset']})")
