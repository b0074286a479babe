from __future__ import annotations

import time

import click

from ..blur.ops import CUDA_BLUR_MODES, DEFAULT_CUDA_BLUR
from ..blur.pipeline.streams import DECODER_CHOICES
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
@click.option("--gpu-stages", type=click.Choice(["fused", "split", "graph"]), default="fused", show_default=True,
              help="CUDA engine: infer, post and blur in one thread (fused), three (split), or CUDA graphs (graph).")
@click.option("--streams", default=None, metavar="N,N,...",
              help="Streams-per-GPU bench instead: these stream counts decode --source at once (NVDEC on a GPU).")
@click.option("--source", default="one-by-one-person-detection.mp4", show_default=True, metavar="CLIP",
              help="--streams: the clip every stream decodes.")
@click.option("--frames-per-stream", type=int, default=200, show_default=True, help="--streams: frames per stream.")
@click.option("--batch-timeout-ms", type=float, default=40.0, show_default=True,
              help="--streams: send a partial batch this long after its first frame (nvstreammux's timeout).")
@click.option("--decoder", type=click.Choice(DECODER_CHOICES), default="auto",
              show_default=True, help="--streams: NVDEC (nvdec: fbtool's own decoder session where it builds, else "
              "PyNvVideoCodec's; or name one) or PyAV on the CPU; auto = NVDEC where available.")
@click.option("--frame-pool/--no-frame-pool", default=True, show_default=True,
              help="--streams: decoders write into one preallocated frame pool (no: a tensor per frame, to compare).")
@click.option("--memory-lean", is_flag=True,
              help="--streams: the smallest GPU memory measured with identical detections (batch 8 unless --batch, "
              "16 decoding threads, a smaller frame pool and graph buffers, expandable segments; docs/bench.md).")
@click.option("--frames-npy", type=click.Path(exists=True), default=None,
              help="Source frames from a .npy/.npz [N,H,W,3] instead of decoding the shared clips.")
@click.option("--cuda-blur", type=click.Choice(CUDA_BLUR_MODES), default=DEFAULT_CUDA_BLUR, show_default=True,
              help="torch on CUDA: dense (constant kernels per batch) or crops (per-face crops).")
def command(recipe, out, stem, backends, device, frames, naive_frames, size, encode, batch, precision, threads, onnx,
            run_dir, gpu_stages, streams, source, frames_per_stream, batch_timeout_ms, decoder, frame_pool, memory_lean,
            frames_npy, cuda_blur):
    """Naive per-frame PyTorch loop vs fbtool's pipelined blur, on the same frames: JSON, Markdown, PNG."""
    from ..bench import bench, parse_size, write_report
    from ..errors import FbtoolError

    t0 = time.perf_counter()
    if memory_lean and not streams:
        raise FbtoolError("--memory-lean applies to --streams (NVDEC, CUDA graphs) only",
                          "add --streams 32 --device cuda, or leave --memory-lean out")
    if streams:
        from .. import bench_streams as bs

        try:
            counts = [int(v) for v in streams.split(",") if v.strip()]
        except ValueError:
            raise FbtoolError(f"--streams {streams!r} is not a list of counts", "e.g. --streams 1,4,16,32") from None
        if not counts or min(counts) < 1:
            raise FbtoolError("--streams needs counts of at least 1", "e.g. --streams 1,4,16,32")
        plan = None
        if memory_lean:
            from ..blur.pipeline.memory import LEAN

            if not frame_pool:
                raise FbtoolError("--memory-lean needs the frame pool", "leave --no-frame-pool out")
            plan = LEAN
        res = bs.bench_streams(load(recipe), source, counts, frames_per_stream, batch or (plan.batch if plan else 32),
                               precision, naive_frames,
                               batch_timeout_ms, decoder, frame_pool=frame_pool, plan=plan, log=click.echo)
        paths = bs.write_report(res, out, stem if stem != "bench" else "bench_streams")
        click.echo(open(paths["md"]).read())
        success("bench", t0, ", ".join(str(p) for p in paths.values()))
        return
    res = bench(load(recipe), [b.strip() for b in backends.split(",") if b.strip()], device, frames, parse_size(size),
                naive_frames, encode, batch, onnx, run_dir, precision, frames_npy=frames_npy, threads=threads,
                fuse_gpu=gpu_stages != "split", gpu_stages=gpu_stages, cuda_blur=cuda_blur, log=click.echo)
    paths = write_report(res, out, stem)
    click.echo(open(paths["md"]).read())
    success("bench", t0, ", ".join(str(p) for p in paths.values()))
