"""Where the whole process's GPU memory goes with N NVDEC streams (issue 18; docs/bench.md).

NVML's figure for this process (CUDA context included) after each step: PyTorch's CUDA context, then N
decoders opened on the clip, then each decoding `--frames` frames (views only: nothing of ours is kept),
then a frame pool as the muxer allocates it. The step differences divided by N are NVDEC's own cost per
stream (decode surfaces and PyNvVideoCodec's output frames), which no option of PyNvVideoCodec 2.2.4
reduces (nvdec.py). Writes gpu_streams_memory.json to --out.
Usage: python scripts/gpu_streams_memory.py --clip faces1080.mp4 --streams 1,8,32 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", required=True)
    ap.add_argument("--streams", default="1,8,32")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--out", default=".")
    a = ap.parse_args(argv)

    import gc

    import torch

    from toolchain.blur.pipeline.streams import FramePool, StreamMux, open_decoder
    from toolchain.gpumon import GpuMonitor

    mon = GpuMonitor()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    used = (lambda: mon.process_mb()) if mon.process_mb() else (lambda: mon.device_used_mb())
    rep = {"gpu": torch.cuda.get_device_name(0), "context_mib": used(),
           "figure": "process (NVML)" if mon.process_mb() else "device used (NVML)", "runs": []}
    for n in [int(v) for v in a.streams.split(",")]:
        gc.collect()
        torch.cuda.empty_cache()
        base = used()
        decs = [open_decoder(a.clip, nvdec=True) for _ in range(n)]
        opened = used()
        for d in decs:
            for _ in d.frames(a.frames, clone=False):
                pass
        torch.cuda.synchronize()
        decoded = used()
        mux = StreamMux(decs, 32, 0.04, a.frames)
        pool = FramePool(mux.pool_size(), (decs[0].height * 3 // 2, decs[0].width), "cuda")
        pooled = used()
        row = {"streams": n, "before_mib": base, "decoders_opened_mib": opened, "after_decode_mib": decoded,
               "with_frame_pool_mib": pooled, "pool_frames": pool.buf.shape[0],
               "per_stream_open_mib": (opened - base) / n, "per_stream_decoding_mib": (decoded - base) / n,
               "pool_mib": pooled - decoded}
        rep["runs"].append(row)
        print(json.dumps(row), flush=True)
        del decs, mux, pool
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_streams_memory.json").write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
