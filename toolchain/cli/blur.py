from __future__ import annotations

import time

import click

from ..blur.ops import CUDA_BLUR_MODES, DEFAULT_CUDA_BLUR
from ..blur.pipeline.streams import DECODER_CHOICES
from ._common import load, recipe_option, success


@click.command("blur")
@click.argument("sources", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", required=True, metavar="OUT.mp4|DIR",
              help="Blurred H.264 MP4 (written atomically); a folder with several inputs or a folder input.")
@recipe_option
@click.option("--backend", type=click.Choice(["ort", "torch", "tensorrt", "nvinfer"]), default="ort",
              show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--onnx", type=click.Path(), default=None, help="ONNX for ort/nvinfer (default: the run folder's).")
@click.option("--run", "run_dir", default="runs/default", show_default=True, metavar="DIR",
              help="Run folder holding the exported ONNX / built engine.")
@click.option("--engine", "engine_path", type=click.Path(), default=None, help="TensorRT engine (tensorrt backend).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Also write the detector's faces as JSON lines (one input only).")
@click.option("--mode", type=click.Choice(["blur", "pixelate", "solid"]), default=None,
              help="What replaces a face (default: the recipe's blur.mode, blur). CPU engines.")
@click.option("--mask-scale", type=float, default=None,
              help="Grow each blurred ellipse by this factor (default: the recipe's blur.mask_scale, 1.3).")
@click.option("--contour", type=click.Choice(["ellipse", "facemesh"]), default=None,
              help="Face mask: the detector's ellipse, or FaceMesh's face oval where it sees the face (default: the "
              "recipe's contour, ellipse; docs/contour.md). Host engines.")
@click.option("--batch", type=int, default=None, help="Frames per inference batch (default 4; 16 on CUDA).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="torch on CUDA only.")
@click.option("--start", type=int, default=0, help="First frame to process.")
@click.option("--max-frames", type=int, default=None)
@click.option("--verify", is_flag=True, help="Independent audit: other detectors on the original frames; every face "
              "must lose >= 90% of its detail. On failure the video stays OUT.unverified.mp4.")
@click.option("--stats", is_flag=True, help="Print each stage's busy time.")
@click.option("--cuda-blur", type=click.Choice(CUDA_BLUR_MODES), default=DEFAULT_CUDA_BLUR, show_default=True,
              help="torch on CUDA: dense (constant kernels per batch) or crops (per-face, exact to the CPU blur).")
@click.option("--decoder", type=click.Choice(DECODER_CHOICES), default="auto",
              show_default=True, help="--device cuda --backend torch: NVDEC + CUDA graphs (auto: where PyNvVideoCodec "
              "is installed; nvdec: fbtool's own decoder session where it builds, else PyNvVideoCodec's; or name one).")
@click.option("--encode/--no-encode", default=True, show_default=True,
              help="NVDEC path only: --no-encode keeps frames on the GPU and writes the faces (sidecar, --json) only.")
@click.option("--memory-lean", is_flag=True,
              help="NVDEC path only: the smallest GPU memory measured with identical detections (batch 8 unless "
              "--batch, 16 decoding threads, a smaller frame pool and graph buffers, expandable segments; docs/bench.md).")
def command(sources, output, recipe, backend, device, onnx, run_dir, engine_path, json_path, mode, mask_scale, contour,
            batch, precision, start, max_frames, verify, stats, cuda_blur, decoder, encode, memory_lean):
    """Blur every face of one or more videos (MP4/GIF, or a folder of them): tracked, recall-first."""
    from ..blur.app import blur_many, blur_nvdec
    from ..blur.engines import make_engine
    from ..errors import FbtoolError
    from ..recipe import with_blur, with_contour

    if batch is not None and batch < 1:
        raise FbtoolError("--batch must be at least 1")
    t0 = time.perf_counter()
    plan = None
    if memory_lean:
        from ..blur.pipeline.memory import LEAN, apply_process_settings

        if device != "cuda" or backend != "torch" or decoder == "cpu":
            raise FbtoolError("--memory-lean applies to the NVDEC path only",
                              "use --device cuda --backend torch (NVDEC decoder), or leave --memory-lean out")
        plan = LEAN
        batch = batch or plan.batch
        apply_process_settings(plan)  # before the engine makes the CUDA context
    r = with_contour(with_blur(load(recipe), mode=mode, mask_scale=mask_scale), contour)
    eng = make_engine(r, backend, device, onnx=onnx, run_dir=run_dir, engine_path=engine_path, batch=batch,
                      precision=precision, cuda_blur=cuda_blur)

    def report(info):
        if "error" in info:
            click.secho(f"  {info['source']}: {info['error']}", fg="red")
            return
        if stats and info.get("encoder"):
            e = info["encoder"]
            click.echo(f"  CPU encoders: {e['workers']} threads, each busy {100 * (e['busy_fraction_mean'] or 0):.0f}% "
                       f"of the run; the GPU side waited {e['put_wait_s']:.1f} s on them "
                       f"(GPU side alone {info['fps_gpu_side']:.1f} frames/s); "
                       f"{info['cpu_busy_cores'] or 0:.1f} CPU cores busy on average")
        if stats:
            for s in info["stages"]:
                click.echo(f"  {s['stage']:<10} busy {s['busy_s']:7.3f} s  waiting {s['wait_in_s']:7.3f} s  "
                           f"blocked {s['wait_out_s']:7.3f} s")
        if verify and "proof" in info:
            p = info["proof"]
            click.echo(f"  audit: {p['summary']}")
            for f in p["failures"][:10]:
                click.echo(f"    {f}")
            if len(p["failures"]) > 10:
                click.echo(f"    ... {len(p['failures']) - 10} more in {p['audit_json']}")
            click.echo(f"  contact sheet of the worst faces: {p['sheet']}")
        held = f", {info['faces_held']} of them held by tracks" if info.get("faces_held") else ""
        if r.contour.model is not None:
            held += f", {info.get('faces_oval', 0)} as {r.contour.model} ovals (the rest as ellipses)"
        click.echo(f"  {info['output']}: {info['frames']} frames, {info.get('faces_blurred', info['faces'])} faces "
                   f"blurred{held}, "
                   f"{info['fps']:.1f} frames/s ({info['backend']}, batch {info['batch']}, bound by {info['bound_by']})")

    nvdec = None
    if eng.cuda and decoder != "cpu":
        from ..blur.pipeline.streams import resolve_decoder

        nvdec = resolve_decoder(decoder, True)
    if plan is not None and not nvdec:
        raise FbtoolError("--memory-lean applies to the NVDEC path only, and no NVDEC decoder is available here",
                          "install PyNvVideoCodec (the gpu extra), or leave --memory-lean out")
    if nvdec:  # issue 18's GPU path: every input at once, batched across inputs; no tracks; the same audit
        if start:
            raise FbtoolError("--start is not supported with NVDEC", "use --decoder cpu")
        results = blur_nvdec(r, sources, output, eng, json_path, encode=encode, max_frames=max_frames,
                             verify=verify, on_result=report, nvdec=nvdec, plan=plan)
        verify = verify and encode
    elif not encode:
        raise FbtoolError("--no-encode needs the NVDEC path", "use --device cuda --backend torch with PyNvVideoCodec")
    else:
        results = blur_many(r, sources, output, eng, json_path=json_path, max_frames=max_frames, start=start,
                            verify=verify, on_result=report)
    failed = [x for x in results if "error" in x or (verify and not x["proof"]["ok"])]
    if failed:
        leaks = [x for x in failed if "error" not in x]
        raise FbtoolError(f"{len(failed)} of {len(results)} input(s) failed" + (
            f", {len(leaks)} with faces left sharp (the audit's leaks above): each such video was kept as "
            "<name>.unverified.mp4, nothing at OUT" if leaks else ""),
            "the worst faces are in <name>.audit.png (original | output) and every leak in <name>.audit.json; "
            "try --mask-scale 1.6 or a lower `blur: score` in the recipe, and if a face still leaks, file an issue "
            "in fbtool's tracker with those two files and the input")
    success("blur", t0, f"{len(results)} input(s) blurred" + (" and verified" if verify else ""))
