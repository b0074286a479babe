from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import load, out_option, recipe_option, success

DS_VERSIONS = ["7.1", "8.0", "9.0", "9.1"]


@click.command("deepstream")
@recipe_option
@out_option
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--deepstream", "ds_version", type=click.Choice(DS_VERSIONS), default="9.1", show_default=True,
              help="Target DeepStream version (decides INT8 path, blur app, allowed keys).")
@click.option("--ds-dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: deepstream_configs/<model>/).")
@click.option("--gpu-id", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=None, help="nvinfer batch-size (default: the engine's / recipe's max).")
@click.option("--no-mask", is_flag=True, help="Plain detector (network-type=0, cluster-mode=2 NMS) without masks.")
@click.option("--input", "input_uri", default=None, help="Source URI for the deepstream-app config.")
@click.option("--check", "check_file", type=click.Path(dir_okay=False), default=None,
              help="Only check this nvinfer or deepstream-app config file, write nothing.")
def command(recipe, out, precision, ds_version, ds_dir, gpu_id, batch_size, no_mask, input_uri, check_file):
    """nvinfer config, labels, deepstream-app config and (9.x) face-blur app, checked key by key."""
    from ..nvinfer import keys

    t0 = time.perf_counter()
    if check_file:
        from ..errors import FbtoolError
        from ..nvinfer import conformance

        findings = keys.check_file(check_file, ds_version)
        for f in findings:
            click.echo(f"  {f}")
        keys.ensure_valid(findings, check_file)
        click.echo(f"  checked with: fbtool's key table for DeepStream {ds_version}")
        reason = conformance.missing_reason()
        if reason:
            click.echo(f"  not checked with NVIDIA's parser: {reason}")
        else:
            used, errs = conformance.check_with_nvidia(check_file)
            click.echo(f"  checked with: {used}")
            if errs:
                raise FbtoolError(f"{check_file}: NVIDIA's parser: {errs[0]}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""),
                                  "fix the key it names; see docs/deepstream.md")
        success("deepstream --check", t0, f"{check_file}: valid for DeepStream {ds_version}"
                f" ({len(findings)} warning(s))")
        return
    from ..deepstream import emit

    info = emit(load(recipe), out, precision=precision, ds_version=ds_version, ds_dir=ds_dir, gpu_id=gpu_id,
                mask=not no_mask, batch=batch_size, input_uri=input_uri)
    show(info, precision, ds_version, t0)


def show(info: dict, precision: str, ds_version: str, t0: float) -> None:
    for key, path in info["files"].items():
        click.echo(f"  {key:<13} {path}")
    for w in info["warnings"]:
        click.echo(f"  {w}")
    if info.get("sgie"):  # two-model recipe: FaceMesh as the secondary GIE (docs/deepstream.md, "Two models")
        sg = info["sgie"]
        click.echo(f"  FaceMesh SGIE {sg['precision']}, between the contour components: {sg['pipeline']}")
    if not info["parser_lib_exists"]:
        click.echo(f"  note: {info['parser_lib']} does not exist yet: build the parser there (docs/deepstream.md)")
    if info.get("dsblur_lib") and not Path(info["dsblur_lib"]).is_file():
        click.echo(f"  note: the blur app needs {info['dsblur_lib']}: on the DeepStream host, "
                   "`fbtool build-parser --dsblur` builds it (docs/deepstream.md)")
    success("deepstream", t0, f"{info['ds_dir']} ({precision}, DeepStream {ds_version}, engine "
            f"{info['engine'].rsplit('/', 1)[-1]})")
