from __future__ import annotations

import time

import click

from ..blur.ops import CUDA_BLUR_MODES, DEFAULT_CUDA_BLUR
from ._common import load, recipe_option, success


@click.command("bench")
@recipe_option
@click.option("-o", "--out", "out", default="bench/results", show_default=True, metavar="DIR",
              help="Folder for bench.json, bench.md and bench.png.")
@click.option("--stem", default="bench", show_default=True, help="File name stem of the three outputs.")
@click.option("--backends", default="ort,torch", show_default=True, help="Comma-separated: ort, torch, tensorrt, nvinfer.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device of the naive loop and of the torch backend.")
@click.option("--frames", type=int, default=64, show_default=True, help="Frames per pipelined run.")
@click.option("--naive-frames", type=int, default=32, show_default=True, help="Frames for the naive loop (slow).")
@click.option("--size", default="1920x1080", show_default=True, help="Frame size WIDTHxHEIGHT (clips are resized).")
@click.option("--encode/--no-encode", default=True, show_default=True, help="Encode H.264 in both runs (needs PyAV).")
@click.option("--batch", type=int, default=None)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--threads", type=int, default=None, help="onnxruntime intra-op threads.")
@click.option("--onnx", type=click.Path(), default=None)
@click.option("--run", "run_dir", default="runs/default", show_default=True, metavar="DIR")
@click.option("--gpu-stages", type=click.Choice(["fused", "split"]), default="fused", show_default=True,
              help="CUDA engine: infer, post and blur in one thread (fused) or three.")
@click.option("--frames-npy", type=click.Path(exists=True), default=None,
              help="Source frames from a .npy/.npz [N,H,W,3] instead of decoding the shared clips.")
@click.option("--cuda-blur", type=click.Choice(CUDA_BLUR_MODES), default=DEFAULT_CUDA_BLUR, show_default=True,
              help="torch on CUDA: dense (constant kernels per batch) or crops (per-face crops).")
def command(recipe, out, stem, backends, device, frames, naive_frames, size, encode, batch, precision, threads, onnx,
            run_dir, gpu_stages, frames_npy, cuda_blur):
    """Naive per-frame PyTorch loop vs fbtool's pipelined blur, on the same frames: JSON, Markdown, PNG."""
    from ..bench import bench, parse_size, write_report

    t0 = time.perf_counter()
    res = bench(load(recipe), [b.strip() for b in backends.split(",") if b.strip()], device, frames, parse_size(size),
                naive_frames, encode, batch, onnx, run_dir, precision, frames_npy=frames_npy, threads=threads, fuse_gpu=gpu_stages == "fused",
                cuda_blur=cuda_blur,                 log=click.echo)
    paths = write_report(res, out, stem)
    click.echo(open(paths["md"]).read())
    success("bench", t0, ", ".join(str(p) for p in paths.values()))
