"""Where the whole process's GPU memory goes with N NVDEC streams (issue 18; docs/bench.md).

NVML's figure for this process (CUDA context included) after each step: PyTorch's CUDA context, then per
decoder kind and stream count: N decoders opened on the clip, the frame pool the muxer would allocate
for them, then each decoding `--frames` frames into that pool (each slot given back at once: nothing of
ours is kept), every decoder still open. (decoded - pooled) / N is NVDEC's own cost per stream: its decode and output surfaces,
and for PyNvVideoCodec its own output frames. `--decoders fbtool,pynvvideocodec` compares fbtool's
session (plugins/nvdec: min_num_decode_surfaces, one output surface) with PyNvVideoCodec 2.2.4's, in one
process; the first decoder of the process also pays NVDEC's one-time setup, so the first row of a
run is not a per-stream figure. Writes gpu_streams_memory.json to --out.
Usage: python scripts/gpu_streams_memory.py --clip faces1080.mp4 --streams 1,8,32 [--decoders ...] --out DIR
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
    ap.add_argument("--batch", type=int, default=32, help="the muxer's batch: the pool's size follows it")
    ap.add_argument("--decoders", default="nvdec", help="comma-separated: nvdec, fbtool, pynvvideocodec")
    ap.add_argument("--out", default=".")
    a = ap.parse_args(argv)

    import gc

    import torch

    from toolchain.blur.pipeline.streams import StreamMux, make_pool, nvdec_kind, open_decoder
    from toolchain.gpumon import GpuMonitor

    mon = GpuMonitor()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    used = (lambda: mon.process_mb()) if mon.process_mb() else (lambda: mon.device_used_mb())
    rep = {"gpu": torch.cuda.get_device_name(0), "context_mib": used(), "batch": a.batch, "frames": a.frames,
           "figure": "process (NVML)" if mon.process_mb() else "device used (NVML)", "runs": []}
    for n in [int(v) for v in a.streams.split(",")]:
        for kind in [k.strip() for k in a.decoders.split(",") if k.strip()]:
            gc.collect()
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = used()
            decs = [open_decoder(a.clip, nvdec=kind) for _ in range(n)]
            opened = used()
            mux = StreamMux(decs, a.batch, 0.04, a.frames)
            pool = make_pool(decs, mux.pool_size(), "cuda")
            pooled = used()
            # every decoder stays open (its generator suspended mid-stream) while memory is read: fbtool's
            # session closes its decoder when its generator ends
            gens = [d.frames(None, into=pool) for d in decs]
            for g in gens:
                for _ in range(a.frames):
                    _, frame, ev = next(g)
                    if ev is not None:
                        ev.synchronize()
                    pool.release_after(None, [pool.slot(frame)])
            torch.cuda.synchronize()
            decoded = used()
            for g in gens:
                g.close()
            stats = getattr(decs[-1], "stats", None)
            row = {"decoder": nvdec_kind(kind), "streams": n, "before_mib": base, "decoders_opened_mib": opened,
                   "with_frame_pool_mib": pooled, "after_decode_mib": decoded, "pool_frames": pool.buf.shape[0],
                   "pool_mib": pooled - opened, "per_stream_decoding_mib": (decoded - pooled) / n,
                   "session_stats": stats}
            rep["runs"].append(row)
            print(json.dumps(row), flush=True)
            del decs, mux, pool, gens, g
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_streams_memory.json").write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
