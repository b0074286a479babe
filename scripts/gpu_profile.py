"""Per-operation cost of the CUDA blur path on one batch (what bounds the pipeline, op by op).

For each op: wall time per call with a synchronize (host + GPU) and the GPU time from CUDA events,
batch of --batch frames at --size from host memory. Printed as a table, saved as gpu_profile.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-npy", default=None)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=".")
    ap.add_argument("--cuda-blur", default="dense", choices=("dense", "crops"))
    a = ap.parse_args(argv)

    import torch

    from toolchain.bench import load_source_frames, make_frames, parse_size
    from toolchain.blur.engines import make_engine
    from toolchain.blur.ops.torch import blur_batch
    from toolchain.blur.pipeline.stages import cuda_blur_fn
    from toolchain.recipe import load_recipe
    from toolchain.reference.torch_port import anchors_torch, letterbox_torch, postprocess_torch, to_frame_torch

    r = load_recipe()
    b = a.batch
    host_np = make_frames(load_source_frames(npy=a.frames_npy), b, parse_size(a.size))
    pinned = torch.from_numpy(host_np).pin_memory()
    dev = torch.device("cuda")
    g = pinned.to(dev)
    out_pinned = torch.empty_like(pinned).pin_memory()
    rows = []

    def bench(name, fn, n=10, nbytes=None):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        e0.record()
        for _ in range(n):
            fn()
        e1.record()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / n * 1000
        gpu = e0.elapsed_time(e1) / n
        row = {"op": name, "wall_ms": round(wall, 3), "gpu_ms": round(gpu, 3), "per_frame_ms": round(wall / b, 4)}
        if nbytes:
            row["GB_per_s"] = round(nbytes / (wall / 1000) / 1e9, 2)
        rows.append(row)
        print(f"{name:<36} wall {wall:8.3f} ms  gpu {gpu:8.3f} ms  {wall / b:7.4f} ms/frame"
              + (f"  {row['GB_per_s']} GB/s" if nbytes else ""), flush=True)

    nb = pinned.numel()
    bench("H2D pinned", lambda: pinned.to(dev, non_blocking=True), nbytes=nb)
    bench("D2H pinned", lambda: out_pinned.copy_(g, non_blocking=True), nbytes=nb)
    bench("letterbox fp32", lambda: letterbox_torch(g, r))
    bench("letterbox fp16", lambda: letterbox_torch(g, r, dtype=torch.float16))
    x32, lb = letterbox_torch(g, r)
    for prec in ("fp32", "fp16"):
        eng = make_engine(r, "torch", "cuda", precision=prec, batch=b, cuda_blur=a.cuda_blur)
        x = x32.to(eng.dtype)
        with torch.inference_mode():
            bench(f"model {prec} channels_last", lambda m=eng.model, x=x: m(x))
            xc = x.contiguous(memory_format=torch.channels_last)
            bench(f"model {prec} channels_last input", lambda m=eng.model, x=xc: m(x))
    eng = make_engine(r, "torch", "cuda", precision="fp32", batch=b, cuda_blur=a.cuda_blur)
    with torch.inference_mode():
        outs = eng.model(x32)
    names = [r.outputs.boxes, r.outputs.scores, r.outputs.landmarks]
    raw = {n: t.float() for n, t in zip(names, outs)}
    anchors = anchors_torch(r, dev)
    bench("postprocess+to_frame+to_numpy", lambda: to_frame_torch(postprocess_torch(raw, r, anchors), lb).to_numpy())
    dets = to_frame_torch(postprocess_torch(raw, r, anchors), lb)
    faces = int(dets.keep.sum())
    work = g.clone()
    bench(f"blur_batch ({faces} faces)", lambda: blur_batch(work, dets))
    from toolchain.blur.ops.dense import blur_batch_dense

    bench(f"blur_batch_dense ({faces} faces)", lambda: blur_batch_dense(work, dets))
    import torch.nn.functional as F

    from toolchain.blur.ops.torch import area_pool

    for k in (30, 97):
        bench(f"avg_pool2d k={k} x{b} frames", lambda k=k: [F.avg_pool2d(
            g[i].permute(2, 0, 1)[None].half(), k, k, ceil_mode=True) for i in range(b)])
        bench(f"area_pool k={k} x{b} frames", lambda k=k: [area_pool(g[i], k) for i in range(b)])

    def chain():
        x = pinned.to(dev, non_blocking=True)
        xin, lb2 = letterbox_torch(x, r)
        with torch.inference_mode():
            o = {n: t.float() for n, t in zip(names, eng.model(xin))}
            d = to_frame_torch(postprocess_torch(o, r, anchors), lb2)
            d.to_numpy()
            cuda_blur_fn(a.cuda_blur)(x, d)
        out_pinned.copy_(x, non_blocking=True)

    bench("whole chain, one stream, no overlap", chain, n=5)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            blur_batch_dense(work, dets)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=40)
    (Path(a.out) / "blur_kernels.txt").parent.mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "blur_kernels.txt").write_text(table)
    print("\n".join(line[:150] for line in table.splitlines()[:14]))
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_profile.json").write_text(json.dumps({"batch": b, "size": a.size, "ops": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
