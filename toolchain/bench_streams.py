"""`fbtool bench --streams 1,4,16,32,64 --source CLIP`: DeepStream's yardstick, streams per GPU.

For each stream count N, N decoders read the clip at once (NVDEC on a GPU; PyAV on the CPU where
there is none), frames are batched across streams (blur/pipeline/streams.py) through the graphed stage
(blur/pipeline/graphs.py: NV12 -> BGR, letterbox, model, sync-free post-processing, blur), and stay on the GPU
(detections come back to the host). Reported per N: aggregate and per-stream frames/s, how many
streams of the clip that rate sustains in real time at 30 frames/s, latency p50/p99 (decoded -> its
detections on the host), GPU and NVDEC utilisation and the whole process's GPU memory (NVML,
toolchain/gpumon.py) next to PyTorch's allocator peak, NVDEC alone at the same N, and the naive
per-frame loop on the same clip in the same run.
"""

from __future__ import annotations

import gc
import math
import os
import time

from .bench import _machine, naive_loop
from .fsutil import atomic_path


def _host_frames(source: str, nvdec: bool, count: int):
    """The clip's first `count` frames as BGR numpy (decoded the way the streams are)."""
    import torch

    from .blur.ops.kernels import nv12_to_bgr
    from .blur.pipeline.streams import open_decoder

    dec = open_decoder(source, nvdec)
    out = []
    for _, f, _ in dec.frames(count, sync=True):
        out.append(nv12_to_bgr(f[None])[0].cpu().numpy())
    del dec
    if nvdec:
        torch.cuda.synchronize()
    return out


def decode_only(source: str, n: int, nvdec: bool, max_frames: int, batch: int, frame_pool: bool = True,
                plan=None) -> dict:
    """The decoding threads and the muxer alone (same pool or clones, threads as the run), no GPU stage."""
    import torch

    from .blur.pipeline.streams import StreamMux, make_pool, open_decoder

    decs = [open_decoder(source, nvdec) for _ in range(n)]
    mux = StreamMux(decs, batch, 0.04, max_frames, threads=plan.decode_threads if plan else None,
                    lean_pool=bool(plan) and plan.pool == "lean")
    if frame_pool:
        mux.pool = make_pool(decs, mux.pool_size(), "cuda" if torch.cuda.is_available() else "cpu", mux.stop)
    t0 = time.perf_counter()
    frames = 0
    for b in mux.batches():
        for it in b:  # decoded = its copy has landed
            if it[4] is not None:
                it[4].synchronize()
        if mux.pool is not None:
            mux.pool.release_after(None, [it[5] for it in b])
        frames += len(b)
    wall = time.perf_counter() - t0
    del decs, mux
    return {"frames": frames, "fps": frames / wall if wall > 0 else 0.0}


def bench_streams(recipe, source: str, streams=(1, 4, 16, 32, 64), frames_per_stream: int = 200, batch: int = 32,
                  precision: str = "fp16", naive_frames: int = 16, timeout_ms: float = 40.0, decoder: str = "auto",
                  blur: bool = True, decode_baseline: bool = True, slots: int = 2, frame_pool: bool = True,
                  plan=None, log=print) -> dict:
    """plan (blur/pipeline/memory.py, e.g. LEAN for --memory-lean): graph slots, letterbox chunk, frame
    buffers, pool policy, decoding threads and allocator settings; None: the defaults (slots as given)."""
    from .blur.pipeline.memory import apply_process_settings, check
    from .gpumon import GpuMonitor

    if plan is not None:
        apply_process_settings(check(plan))  # before the CUDA context: the allocator reads its settings once
        slots = plan.graph_slots
    mon0 = GpuMonitor()  # before this process makes its CUDA context: the baseline of device memory
    import torch

    from .blur.engines import make_engine
    from .blur.pipeline.graphs import GraphRunner
    from .blur.pipeline.streams import open_decoder, resolve_decoder, run_streams
    from .media import resolve_media

    src = source if "://" in source else str(resolve_media(source))
    cuda = torch.cuda.is_available()
    nvdec = resolve_decoder(decoder, cuda)  # None: PyAV on the CPU; else "fbtool" / "pynvvideocodec"
    device = "cuda" if cuda else "cpu"
    probe = open_decoder(src, nvdec)
    w, h = probe.width, probe.height
    del probe
    result = {"settings": {"source": source, "size": f"{w}x{h}", "streams": list(streams), "batch": batch,
                           "frames_per_stream": frames_per_stream, "precision": precision, "decoder":
                           f"nvdec ({nvdec})" if nvdec else "pyav-cpu", "batch_timeout_ms": timeout_ms, "blur": blur,
                           "frames_stay_on_gpu": True, "encode": False,
                           "graph_slots": slots, "frame_pool": frame_pool,
                           "memory_plan": None if plan is None else plan.to_dict(),
                           # the knobs measured by environment (docs/bench.md), as they were in this run
                           "env": {k: os.environ[k] for k in ("FBTOOL_DECODE_THREADS", "FBTOOL_GIL_SWITCH_S",
                                                              "FBTOOL_NVDEC_DISPLAY_DELAY", "PYTORCH_CUDA_ALLOC_CONF")
                                   if os.environ.get(k)}},
              "machine": _machine(cuda), "runs": []}
    host = _host_frames(src, nvdec, naive_frames)
    a = naive_loop(recipe, host, device)
    a.update({"name": f"naive torch-{device} fp32 (host frames of the clip)", "kind": "naive"})
    result["naive"] = a
    log(f"bench streams: {src} {w}x{h}, decoder {f'NVDEC ({nvdec})' if nvdec else 'PyAV (CPU)'}; naive {a['fps']:.1f} frames/s")
    eng = make_engine(recipe, "torch", device, batch=batch, precision=precision, tensor_path=not cuda)
    t0 = time.perf_counter()
    kw = {} if plan is None else {"chunk": plan.frame_chunk, "keep_frames": plan.keep_frames}
    runner = GraphRunner(eng.model, recipe, batch, h, w, eng.dtype, fmt="nv12", download=False, blur=blur, slots=slots,
                         **kw)
    result["settings"]["capture_s"] = time.perf_counter() - t0
    run_streams(runner, [open_decoder(src, nvdec)], max_frames=2 * batch, timeout_s=timeout_ms / 1000,
                frame_pool=frame_pool, plan=plan)  # warm-up
    for n in streams:
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        runner.inexact = 0
        decs = [open_decoder(src, nvdec) for _ in range(n)]
        with GpuMonitor(baseline_mb=mon0.baseline_mb) as mon:
            info = run_streams(runner, decs, max_frames=frames_per_stream, timeout_s=timeout_ms / 1000,
                               frame_pool=frame_pool, plan=plan)
        del decs
        row = {"streams": n, **info, **mon.summary(),
               "torch_allocator_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
               "torch_reserved_peak_mb": torch.cuda.max_memory_reserved() / 2**20 if cuda else None}
        row["fps_per_stream"] = row["fps"] / n
        row["realtime_streams_at_30fps"] = int(math.floor(row["fps"] / 30.0))
        row["speedup_vs_naive"] = row["fps"] / a["fps"] if a["fps"] else None
        if decode_baseline:
            row["nvdec_only_fps" if nvdec else "decode_only_fps"] = decode_only(src, n, nvdec, frames_per_stream,
                                                                                batch, frame_pool, plan)["fps"]
        result["runs"].append(row)
        mem = row.get("gpu_mem_process_peak_mb") or row.get("gpu_mem_device_delta_peak_mb")
        log(f"  {n:3d} streams: {row['fps']:8.1f} frames/s ({row['fps_per_stream']:.1f}/stream, "
            f"{row['realtime_streams_at_30fps']} x 30 fps), p50 {row['latency_ms_p50']:.0f} ms, "
            f"GPU {row.get('gpu_util_mean_pct') or 0:.0f}%, NVDEC {row.get('nvdec_util_mean_pct') or 0:.0f}%, "
            f"mem {mem if mem is None else round(mem)} MiB (torch reserved {row['torch_reserved_peak_mb'] or 0:.0f}), inexact {row['inexact_frames']}")
    return result


def to_markdown(result: dict) -> str:
    s, na = result["settings"], result["naive"]
    plan = (s.get("memory_plan") or {}).get("name")
    lines = [f"# fbtool bench --streams: {s['source']} ({s['size']}), decoder {s['decoder']}, batch {s['batch']}, "
             f"{s['precision']}, frames stay on the GPU" + (f", memory plan {plan}" if plan else ""), "", f"Machine: {result['machine']}", "",
             f"Naive loop (same run, host frames of the clip): {na['fps']:.1f} frames/s, latency p50 "
             f"{na['latency_ms_p50']:.0f} ms", "",
             "| streams | frames | frames/s | per stream | x 30 fps streams | x naive | latency p50 / p99 ms | "
             "GPU % | NVDEC % | GPU MiB (process, NVML) | device delta MiB | torch peak MB | torch reserved MB | "
             "decode alone frames/s | batch fill | inexact |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt="{:.0f}"):
        return "-" if v is None else fmt.format(v)

    for r in result["runs"]:
        dec = r.get("nvdec_only_fps", r.get("decode_only_fps"))
        lines.append(f"| {r['streams']} | {r['frames']} | {r['fps']:.1f} | {r['fps_per_stream']:.1f} | "
                     f"{r['realtime_streams_at_30fps']} | {f(r['speedup_vs_naive'], '{:.0f}')} | "
                     f"{r['latency_ms_p50']:.0f} / {r['latency_ms_p99']:.0f} | {f(r.get('gpu_util_mean_pct'))} | "
                     f"{f(r.get('nvdec_util_mean_pct'))} | {f(r.get('gpu_mem_process_peak_mb'))} | "
                     f"{f(r.get('gpu_mem_device_delta_peak_mb'))} | {f(r.get('torch_allocator_peak_mb'))} | "
                     f"{f(r.get('torch_reserved_peak_mb'))} | "
                     f"{f(dec, '{:.1f}')} | {r['batch_fill']:.2f} | {r['inexact_frames']} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    n = [r["streams"] for r in runs]
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    ax.plot(n, [r["fps"] for r in runs], "o-", label="fbtool: decode -> detect -> blur (aggregate)")
    dec = [r.get("nvdec_only_fps", r.get("decode_only_fps")) for r in runs]
    if all(d is not None for d in dec):
        ax.plot(n, dec, "s--", color="#999999", label="decode alone")
    ax.axhline(result["naive"]["fps"], color="#cc4444", ls=":", label="naive per-frame loop")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("streams")
    ax.set_ylabel("frames/s")
    s = result["settings"]
    ax.set_title(f"streams vs frames/s: {s['size']}, {s['decoder']}, {result['machine'].get('gpu', 'cpu')}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(result: dict, out_dir, stem: str = "bench_streams") -> dict:
    from .bench import write_report as write

    return write(result, out_dir, stem, markdown=to_markdown, draw=plot)
