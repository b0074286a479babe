"""`fbtool blur`: the pipelined face-blur job (library side; the CLI only parses options)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import FbtoolError
from ..fsutil import write_text
from .engines import Engine
from .pipeline.core import Pipeline, Stage


def build_stages(engine: Engine, recipe, source, sink_fn, stop, pinned=None, count: int | None = None,
                 fuse_gpu: bool = True) -> list[Stage]:
    """Stages for `engine`. `source` yields (index, frame); or `pinned` is an [N, H, W, 3] pinned tensor."""
    from .pipeline import stages as st

    b = engine.batch
    if engine.emulator is not None:
        return [Stage("decode", st.frame_source(source)), Stage("batch", st.host_batches(b)),
                Stage("infer", st.nvinfer_infer(engine.emulator)), Stage("blur", st.host_blur(recipe)),
                Stage("encode", sink_fn)]
    if engine.model is None:
        return [Stage("decode", st.frame_source(source)), Stage("preprocess", st.host_preprocess(recipe, b)),
                Stage("infer", st.host_infer(engine.runner, recipe)), Stage("post", st.host_post(recipe)),
                Stage("blur", st.host_blur(recipe)), Stage("encode", sink_fn)]
    from ..reference.torch_port import anchors_torch

    dev = engine.tensor_device
    streams = st.Streams(dev)
    anchors = anchors_torch(recipe, dev)
    tokens = st.gpu_tokens(4, stop)
    head = ([Stage("decode", st.pinned_batches(pinned, b, streams, count))] if pinned is not None else
            [Stage("decode", st.frame_source(source)), Stage("batch", st.cuda_batches(b, stop, streams))])
    infer = st.cuda_infer(engine.model, recipe, engine.dtype, streams)
    post, blur = st.cuda_post(recipe, anchors, streams), st.cuda_blur(recipe, streams, engine.cuda_blur)
    if fuse_gpu:
        # One thread issues all GPU compute (generators chained): measured on the H100, three Python
        # threads launching kernels fought over the GIL and ran slower than one (docs/bench.md).
        middle = [Stage("gpu", lambda items: blur(post(infer(items))))]
    else:
        middle = [Stage("infer", infer), Stage("post", post), Stage("blur", blur)]
    return head + [Stage("upload", st.cuda_upload(dev, tokens, stop, streams)), *middle,
                   Stage("download", st.cuda_download(stop, tokens, streams)), Stage("encode", sink_fn)]


def run_frames(engine: Engine, recipe, source: Iterable | None = None, *, pinned=None, count: int | None = None,
               writer_factory=None, results: list | None = None, keep: list | None = None, progress=None,
               maxsize: int = 3, fuse_gpu: bool = True) -> dict:
    """Run the pipeline once; returns fps, latency percentiles and per-stage busy times."""
    import threading

    from .pipeline import stages as st

    latencies: list[float] = []
    stop = threading.Event()  # made first: the pinned-buffer pools wait on it too
    sink_fn = st.sink(None, results, latencies, progress, keep, writer_factory)
    pipe = Pipeline(build_stages(engine, recipe, source, sink_fn, stop, pinned, count, fuse_gpu), maxsize=maxsize,
                    stop=stop)
    import sys

    # Threads that launch GPU kernels hand the GIL to each other often; a short switch interval keeps a
    # thread that waits for it from waiting the default 5 ms each time.
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, 0.0005))
    t0 = time.perf_counter()
    try:
        stats = pipe.run()
    finally:
        sys.setswitchinterval(old)
    wall = time.perf_counter() - t0
    n = len(latencies)
    lat = np.asarray(latencies) * 1000.0 if n else np.zeros(1)
    return {"frames": n, "wall_s": wall, "fps": n / wall if wall > 0 else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "stages": [s.to_dict() for s in stats],
            "bound_by": max(stats, key=lambda s: s.busy_s).name if stats else None}


def _writer_factory(output: Path, source: Path):
    from .writer import BlurWriter

    def factory():
        return BlurWriter(output, fps=None, source=source)
    return factory


def blur_video(recipe, source, output, engine: Engine, json_path=None, max_frames: int | None = None,
               start: int = 0, progress: bool = True, verify: bool = False) -> dict:
    """Blur every face of `source` (MP4/GIF/...) into the H.264 MP4 `output` (written atomically)."""
    from ..media import iter_frames, resolve_media

    src = resolve_media(source)
    out = Path(output)
    if out.suffix.lower() != ".mp4":
        raise FbtoolError(f"output {out} is not an .mp4", "the blur job writes H.264 MP4: name it *.mp4")
    if out.resolve() == src.resolve():
        raise FbtoolError("the output would overwrite the input", "choose another output name")
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list = []
    bar = None
    if progress:
        from tqdm import tqdm

        from ..media import video_info

        total = max(int(video_info(src).get("frames") or 0) - start, 0) or None
        total = min(total, max_frames) if total and max_frames else (total or max_frames)
        bar = tqdm(total=total, unit="frame", desc=f"blur {src.name}", dynamic_ncols=True)
    try:
        info = run_frames(engine, recipe, iter_frames(src, start=start, max_frames=max_frames),
                          writer_factory=_writer_factory(out, src), results=results,
                          progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if json_path:
        write_text(json_path, "".join(json.dumps(r) + "\n" for r in results))
    info.update({"output": str(out), "faces": sum(len(r["faces"]) for r in results), "backend": engine.name,
                 "batch": engine.batch})
    if verify:
        from .proof import verify_video

        info["proof"] = verify_video(recipe, src, out, start=start, max_frames=max_frames)
    return info
