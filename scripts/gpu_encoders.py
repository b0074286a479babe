"""The CPU encoder pool of `fbtool blur --device cuda` with several inputs, measured (issue 18; docs/bench.md).

All INPUTS (same size) through NVDEC + the graphed stage, blurred frames downloaded and encoded by the
pool (PyAV/libx264, one writer per input), for several pool layouts: encoder threads x x264's own
threads each. Per layout: frames/s to the last closed file, the GPU side's own rate, the encoders'
busy share, how long the GPU side waited on full encoder queues, and the CPU cores the process kept
busy. Then --no-encode on the same inputs. Writes gpu_encoders.json to --out.
Usage: python scripts/gpu_encoders.py --out DIR --max-frames 100 --layouts 16x0,16x1,4x4 INPUT...
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--out", default=".")
    ap.add_argument("--max-frames", type=int, default=100)
    ap.add_argument("--layouts", default="16x0,16x1,4x4", help="WORKERSxX264_THREADS (0: x264 picks)")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args(argv)

    import torch

    from toolchain.blur.app import blur_nvdec
    from toolchain.blur.engines import make_engine
    from toolchain.recipe import load_recipe

    r = load_recipe()
    eng = make_engine(r, "torch", "cuda", batch=a.batch, precision="fp16")
    rep = {"gpu": torch.cuda.get_device_name(0), "inputs": len(a.inputs), "max_frames": a.max_frames,
           "batch": a.batch, "runs": []}
    blur_nvdec(r, a.inputs[:2], "/tmp/enc_warm", eng, max_frames=8, encode=True)  # graph capture, codecs loaded
    layouts = [tuple(int(v) for v in x.split("x")) for x in a.layouts.split(",")] + [(0, 0)]
    for workers, threads in layouts:
        out = Path("/tmp/enc_out")
        shutil.rmtree(out, ignore_errors=True)
        encode = workers > 0
        res = blur_nvdec(r, a.inputs, out, eng, max_frames=a.max_frames, encode=encode, workers=workers or None,
                         x264_threads=threads or None)
        x = res[0]
        row = {"workers": workers if encode else None, "x264_threads": (threads or "auto") if encode else None,
               "encode": encode, "frames": sum(v["frames"] for v in res), "fps": x["fps"],
               "fps_gpu_side": x.get("fps_gpu_side"), "encoder": x.get("encoder"), "cpu_busy_cores": x["cpu_busy_cores"],
               "feeder_thread_busy": x.get("feeder_thread_busy")}
        rep["runs"].append(row)
        print(json.dumps(row), flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_encoders.json").write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
