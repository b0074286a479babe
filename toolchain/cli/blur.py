from __future__ import annotations

import time

import click

from ..blur.ops import CUDA_BLUR_MODES, DEFAULT_CUDA_BLUR
from ._common import load, recipe_option, success


@click.command("blur")
@click.argument("source")
@click.option("-o", "--output", required=True, metavar="OUT.mp4", help="Blurred H.264 MP4 (written atomically).")
@recipe_option
@click.option("--backend", type=click.Choice(["ort", "torch", "tensorrt", "nvinfer"]), default="ort",
              show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--onnx", type=click.Path(), default=None, help="ONNX for ort/nvinfer (default: the run folder's).")
@click.option("--run", "run_dir", default="runs/default", show_default=True, metavar="DIR",
              help="Run folder holding the exported ONNX / built engine.")
@click.option("--engine", "engine_path", type=click.Path(), default=None, help="TensorRT engine (tensorrt backend).")
@click.option("--json", "json_path", type=click.Path(), default=None, help="Also write detections as JSON lines.")
@click.option("--batch", type=int, default=None, help="Frames per inference batch (default 4; 16 on CUDA).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="torch on CUDA only.")
@click.option("--start", type=int, default=0, help="First frame to process.")
@click.option("--max-frames", type=int, default=None)
@click.option("--verify", is_flag=True, help="Prove the blur: face detail drop and PSNR away from faces.")
@click.option("--stats", is_flag=True, help="Print each stage's busy time.")
@click.option("--cuda-blur", type=click.Choice(CUDA_BLUR_MODES), default=DEFAULT_CUDA_BLUR, show_default=True,
              help="torch on CUDA: dense (constant kernels per batch) or crops (per-face, exact to the CPU blur).")
@click.option("--decoder", type=click.Choice(["auto", "nvdec", "cpu"]), default="auto", show_default=True,
              help="--device cuda --backend torch: NVDEC + CUDA graphs (auto: where PyNvVideoCodec is installed).")
@click.option("--encode/--no-encode", default=True, show_default=True,
              help="NVDEC path only: --no-encode keeps frames on the GPU and writes detections (--json) only.")
def command(source, output, recipe, backend, device, onnx, run_dir, engine_path, json_path, batch, precision, start,
            max_frames, verify, stats, cuda_blur, decoder, encode):
    """Blur every face of a video (MP4/GIF) through its contour mask: a pipeline of concurrent stages."""
    from ..blur.app import blur_video
    from ..blur.engines import make_engine
    from ..errors import FbtoolError

    if batch is not None and batch < 1:
        raise FbtoolError("--batch must be at least 1")
    t0 = time.perf_counter()
    r = load(recipe)
    eng = make_engine(r, backend, device, onnx=onnx, run_dir=run_dir, engine_path=engine_path, batch=batch,
                      precision=precision, cuda_blur=cuda_blur)
    nvdec = False
    if eng.cuda and decoder != "cpu":
        from ..blur.nvdec import available

        nvdec = decoder == "nvdec" or available()[0]
    if nvdec:
        from ..blur.multistream import blur_streams

        if start:
            raise FbtoolError("--start is not supported with NVDEC", "use --decoder cpu")
        info = blur_streams(r, [source], [output], eng, [json_path], encode=encode, max_frames=max_frames)
        info["output"] = output if encode else "(not encoded)"
        if verify and encode:
            from ..blur.proof import verify_video

            info["proof"] = verify_video(r, source, output, max_frames=max_frames)
        verify = verify and encode
    elif not encode:
        raise FbtoolError("--no-encode needs the NVDEC path", "use --device cuda --backend torch with PyNvVideoCodec")
    else:
        info = blur_video(r, source, output, eng, json_path=json_path, max_frames=max_frames, start=start,
                          verify=verify)
    if stats:
        for s in info["stages"]:
            click.echo(f"  {s['stage']:<10} busy {s['busy_s']:7.3f} s  waiting {s['wait_in_s']:7.3f} s  "
                       f"blocked {s['wait_out_s']:7.3f} s")
    if verify:
        p = info["proof"]
        click.echo(f"  proof: {p['summary']}")
        for f in p["failures"][:5]:
            click.echo(f"    {f}")
    success("blur", t0, f"{info['output']}: {info['frames']} frames, {info['faces']} faces, {info['fps']:.1f} "
            f"frames/s ({info['backend']}, batch {info['batch']}, bound by {info['bound_by']})")
    if verify and not info["proof"]["ok"]:
        raise FbtoolError("the blur proof failed (see above)", "report this with the input file")
