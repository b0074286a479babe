"""`fbtool blur --device cuda` on NVDEC: every input decoded on the GPU, batched across inputs, one output each.

inputs -> NVDEC (nvdec.py) -> muxer (pipeline/streams.py: a batch from whichever streams have frames,
a batch timeout) -> the graphed stage (pipeline/graphs.py: NV12 -> BGR, detect, blur, CUDA graphs) ->
per input: detections (JSON lines) and, when encoding, the blurred frames to a pool of CPU H.264
encoders (one writer per input, written atomically; os.cpu_count() threads). GPUs with NVENC could
encode on the GPU instead; that is not done here (the GPU this was measured on, an H200, has none).
With --no-encode the frames stay on the GPU and only the detections come back.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import write_text


def encoder_workers() -> int:
    """CPU encoders: one per core this process may use (x264 runs its own threads inside each too)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def blur_streams(recipe, sources: list, outputs: list | None, engine, json_paths: list | None = None,
                 encode: bool = True, max_frames: int | None = None, batch_timeout_s: float = 0.04,
                 nvdec: bool | str = True, workers: int | None = None, x264_threads: int | None = None,
                 plan=None) -> dict:
    """Blur `sources` together on the GPU; outputs[i] (an .mp4) gets sources[i] blurred when encoding.
    plan (pipeline/memory.py, --memory-lean): graph slots, letterbox chunk, frame buffers, pool, threads."""
    from ..media import resolve_media
    from .pipeline.graphs import GraphRunner
    from .pipeline.streams import EncoderPool, nvdec_kind, open_decoder, run_streams

    srcs = [s if "://" in str(s) else str(resolve_media(s)) for s in sources]  # RTSP/HTTP: FFmpeg's demuxer opens them
    if encode:
        if not outputs or len(outputs) != len(srcs):
            raise FbtoolError("one output per input is needed to encode", "give an .mp4 per input, or --no-encode")
        for s, o in zip(srcs, outputs):
            if Path(o).suffix.lower() != ".mp4":
                raise FbtoolError(f"output {o} is not an .mp4", "the blur job writes H.264 MP4: name it *.mp4")
            if "://" not in s and Path(o).resolve() == Path(s).resolve():
                raise FbtoolError("the output would overwrite the input", "choose another output name")
    decoders = [open_decoder(s, nvdec) for s in srcs]
    sizes = {(d.width, d.height) for d in decoders}
    if len(sizes) != 1:  # one captured graph per frame size; inputs of several sizes: one run per size
        raise FbtoolError(f"inputs of different frame sizes {sorted(sizes)}",
                          "blur inputs of one size together (one CUDA graph per size)")
    w, h = sizes.pop()
    kw = {} if plan is None else {"slots": plan.graph_slots, "chunk": plan.frame_chunk,
                                  "keep_frames": plan.keep_frames}
    runner = GraphRunner(engine.model, recipe, engine.batch, h, w, engine.dtype, "nv12", download=encode, **kw)
    results: list[list] = [[] for _ in srcs]
    t0, cpu0 = time.perf_counter(), os.times()
    with contextlib.ExitStack() as stack:
        pool = None
        if encode:
            from .writer import BlurWriter

            writers = []
            for s, o in zip(srcs, outputs):
                Path(o).parent.mkdir(parents=True, exist_ok=True)
                writers.append(stack.enter_context(BlurWriter(o, fps=None, source=s, threads=x264_threads)))
            pool = EncoderPool(writers, workers or encoder_workers())

        def on_frame(sid, idx, dets, frame):
            results[sid].append({"frame": idx, "faces": dets.to_json()})
            if pool is not None:
                pool.put(sid, frame.copy())  # the pinned buffer is reused by the next batch

        try:
            info = run_streams(runner, decoders, max_frames, batch_timeout_s, on_frame, plan=plan)
        finally:
            if pool is not None:
                pool.close()  # raises the first encoder error: ExitStack then drops the temporary files
    wall = time.perf_counter() - t0  # encoders drained and files closed: the whole job
    cpu1 = os.times()
    # cores this process kept busy (all threads, x264's included): near the core count means CPU-bound,
    # near 1 with the GPU idle means one thread (the GIL) was the limit
    busy_cores = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall if wall > 0 else None
    for i, rows in enumerate(results):
        rows.sort(key=lambda r: r["frame"])
        if json_paths and json_paths[i]:
            write_text(json_paths[i], "".join(json.dumps(r) + "\n" for r in rows))
    info.update({"inputs": srcs, "outputs": [str(o) for o in outputs] if encode else None,
                 "backend": engine.name + ", CUDA graphs", "batch": engine.batch,
                 "decoder": f"nvdec ({nvdec_kind(nvdec)})" if nvdec else "pyav-cpu", "rows": results,
                 "memory_plan": None if plan is None else plan.name,
                 "faces": sum(len(r["faces"]) for rows in results for r in rows), "stages": [],
                 "bound_by": "decode + GPU stage", "cpu_busy_cores": busy_cores})
    if pool is not None:
        # fps counts until the last encoder has finished; the GPU side's own rate stays beside it
        info.update({"fps_gpu_side": info["fps"], "wall_s_gpu_side": info["wall_s"], "wall_s": wall,
                     "feeder_thread_busy": info["feeder_thread_cpu_s"] / info["wall_s"] if info["wall_s"] else None,
                     "fps": info["frames"] / wall if wall > 0 else 0.0, "encoder": pool.stats(wall)})
        if info["encoder"]["put_wait_s"] > 0.2 * wall:  # the GPU side waited on full encoder queues
            info["bound_by"] = f"CPU encoders ({pool.workers} threads)"
    return info
