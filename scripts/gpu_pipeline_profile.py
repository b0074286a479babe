"""Where the pipelined CUDA job spends host time: torch.profiler over a run of the fused pipeline.

Prints the top operators / CUDA runtime calls by self CPU time (synchronisations, allocations and
launches show there) and the run's stage table. Writes pipeline_profile.txt to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-npy", default=None)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=".")
    ap.add_argument("--cuda-blur", default="dense", choices=("dense", "crops"))
    a = ap.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from toolchain.bench import load_source_frames, make_frames, parse_size
    from toolchain.blur.app import run_frames
    from toolchain.blur.engines import make_engine
    from toolchain.recipe import load_recipe

    r = load_recipe()
    pinned = torch.from_numpy(make_frames(load_source_frames(npy=a.frames_npy), a.frames, parse_size(a.size))).pin_memory()
    eng = make_engine(r, "torch", "cuda", batch=a.batch, cuda_blur=a.cuda_blur)
    run_frames(eng, r, pinned=pinned, count=a.batch * 4)  # warm-up
    for rep in range(2):  # does it speed up once the allocator has seen every crop size?
        info = run_frames(eng, r, pinned=pinned, count=a.frames)
        print(f"run {rep}: {info['fps']:.1f} frames/s, gpu stage busy "
              f"{[s['busy_s'] for s in info['stages'] if s['stage'] == 'gpu'][0]:.3f} s")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        info = run_frames(eng, r, pinned=pinned, count=a.frames // 2)
    print(f"profiled run: {info['fps']:.1f} frames/s")
    t1 = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=36)
    t2 = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=36)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "pipeline_profile.txt").write_text(t1 + "\n\n" + t2)
    for line in t1.splitlines()[:22]:
        print(line[:40] + line[40:140].replace("  ", " "))
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
