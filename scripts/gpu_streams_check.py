"""Correctness of the graphed CUDA stage and of the NVDEC multi-stream path, on a GPU machine.

1. graph vs eager: the captured graph gives the eager body's detections and frames (same inputs).
2. host frames (--frames-npy, upscaled to 1080p) through the graphed stage: detections vs the CPU
   reference detector (OpenCV letterbox, numpy post-processing), pixel proof on the blurred frames.
3. NVDEC: --streams decoders read --clip at once through the muxer and the graphed NV12 stage (frames
   downloaded); the decoded frames (NV12 -> BGR on the GPU, Triton vs its PyTorch twin vs OpenCV's
   NV12 conversion on the host) are judged: detections vs the CPU reference on the same decoded
   frames, and the pixel proof on the decoded-and-blurred output.
Writes gpu_streams_check.json to --out; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _match(results, frames, recipe, runner):
    from toolchain.compare.metrics import match
    from toolchain.detector import detect_batch
    from toolchain.reference.detections import Detections

    tp = fp = fn = 0
    errs: list = []
    for dets, f in zip(results, frames):
        ref = detect_batch([f], recipe, runner)[0]
        cand = Detections(dets.boxes.reshape(-1, 4), dets.scores)
        m = match(ref, cand, 0.5, with_masks=False)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        errs += m.box_errors
    return {"matched": tp, "extra": fp, "missed": fn, "box_err_px_p50": float(np.median(errs)) if errs else None,
            "box_err_px_max": float(max(errs)) if errs else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-npy", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--skip", type=int, default=44, help="clip frames skipped before the judged ones")
    ap.add_argument("--out", default=".")
    a = ap.parse_args(argv)

    import cv2
    import torch

    from toolchain.bench import load_source_frames, make_frames
    from toolchain.blur.engines import make_engine
    from toolchain.blur.ops import kernels as K
    from toolchain.blur.pipeline.graphs import GraphedStage, GraphRunner, run_host_frames
    from toolchain.blur.pipeline.streams import open_decoder, run_streams
    from toolchain.blur.proof import verify_frames
    from toolchain.recipe import load_recipe
    from toolchain.runners import TorchRunner

    r = load_recipe()
    ref_runner = TorchRunner(r)
    report: dict = {"gpu": torch.cuda.get_device_name(0)}
    ok = True
    src = load_source_frames(npy=a.frames_npy)
    frames = make_frames(src[:: max(1, len(src) // a.count)][: a.count], a.count, (1920, 1080))
    # fp16: the default (heads in fp32, blur/precision.py heads_fp32) and all-fp16 (before; the 13.7 px case)
    for prec in ("fp32", "fp16", "fp16_all"):
        eng = make_engine(r, "torch", "cuda", batch=8, precision=prec[:4], fp32_heads=prec != "fp16_all")
        # 1. graph replay == eager body
        x = torch.from_numpy(frames[:8]).cuda()
        g = GraphedStage(eng.model, r, 8, 1080, 1920, eng.dtype)
        e = GraphedStage(eng.model, r, 8, 1080, 1920, eng.dtype, use_graph=False)
        g.src.copy_(x)
        e.src.copy_(x)
        og, oe = g.replay(), e.replay()
        torch.cuda.synchronize()
        same_keep = bool(torch.equal(og.keep, oe.keep))
        box_d = float((og.boxes[og.keep] - oe.boxes[oe.keep]).abs().max()) if same_keep and bool(og.keep.any()) else None
        pix_d = int((g.frames.int() - e.frames.int()).abs().max())
        report[f"graph_vs_eager_{prec}"] = {"same_keep": same_keep, "max_box_diff_px": box_d,
                                            "max_pixel_diff": pix_d, "faces": int(og.keep.sum()),
                                            "exact_all": bool(og.exact.all())}
        ok &= same_keep and (box_d or 0) < 1e-3 and pix_d <= 1
        del g, e
        # 2. host frames through the graphed stage vs the CPU reference + proof
        runner = GraphRunner(eng.model, r, 8, 1080, 1920, eng.dtype, "bgr", download=True, slots=2)
        results: list = []
        kept: list = []
        pinned = torch.from_numpy(frames).pin_memory()
        info = run_host_frames(runner, pinned, len(frames), results=results, keep=kept)
        from toolchain.reference.detections import Detections

        dets = [Detections(np.array([f["box"] for f in row["faces"]], dtype=np.float32).reshape(-1, 4),
                           np.array([f["score"] for f in row["faces"]], dtype=np.float32)) for row in results]
        m = _match(dets, frames, r, ref_runner)
        proof = verify_frames(r, list(frames), kept, runner=ref_runner)
        report[f"host_frames_{prec}"] = {**m, "inexact_frames": info["inexact_frames"], "proof": proof.summary(),
                                         "proof_ok": proof.ok}
        ok &= m["extra"] == 0 and m["missed"] == 0 and proof.ok and info["inexact_frames"] == 0
        if prec == "fp32":  # fp16 moves boxes a little (docs/bench.md); fp32 must be the reference's
            ok &= (m["box_err_px_max"] or 0) <= 0.5
        del runner, pinned

    eng = make_engine(r, "torch", "cuda", batch=8, precision="fp16")
    # 3. NVDEC: the decoded frames (for the reference) and the multi-stream path's output
    dec = open_decoder(a.clip, nvdec=True)
    nv = [f for i, f, _ in dec.frames(a.skip + a.count, sync=True) if i >= a.skip]
    nvb = torch.stack(nv)
    bgr_t = K.nv12_to_bgr(nvb)
    bgr_w = K.nv12_to_bgr(nvb, force_torch=True)
    host_nv = nvb.cpu().numpy()
    cvt = np.stack([cv2.cvtColor(f, cv2.COLOR_YUV2BGR_NV12) for f in host_nv])
    inputs = list(bgr_t.cpu().numpy())
    d_cv = np.abs(np.stack(inputs).astype(int) - cvt.astype(int))
    # An independent decoder: OpenCV's FFmpeg (CPU) on the same clip, same frames
    cap = cv2.VideoCapture(a.clip)
    ff = []
    for i in range(a.skip + a.count):
        okr, f = cap.read()
        if okr and i >= a.skip:
            ff.append(f)
    d_ff = np.abs(np.stack(inputs).astype(int) - np.stack(ff).astype(int)) if len(ff) == a.count else None
    report["nv12_to_bgr"] = {"triton_vs_twin_max": int((bgr_t.int() - bgr_w.int()).abs().max()),
                             "vs_opencv_nv12_max": int(d_cv.max()), "vs_opencv_nv12_mean": float(d_cv.mean()),
                             "vs_ffmpeg_decode_mean": None if d_ff is None else float(d_ff.mean()),
                             "vs_ffmpeg_decode_p999": None if d_ff is None else float(np.percentile(d_ff, 99.9)),
                             "nvdec_frame": dec.layout}
    ok &= report["nv12_to_bgr"]["triton_vs_twin_max"] == 0 and d_cv.mean() < 0.5
    runner = GraphRunner(eng.model, r, 8, dec.height, dec.width, eng.dtype, "nv12", download=True, slots=2)
    per_stream: dict = {}

    def on_frame(sid, idx, d, f):
        if idx >= a.skip:
            per_stream.setdefault(sid, []).append((idx, d, np.array(f)))

    decs = [open_decoder(a.clip, nvdec=True) for _ in range(a.streams)]
    info = run_streams(runner, decs, max_frames=a.skip + a.count, timeout_s=0.02, on_frame=on_frame)
    rows = []
    for sid, items in sorted(per_stream.items()):
        items.sort(key=lambda t: t[0])
        assert [i for i, *_ in items] == list(range(a.skip, a.skip + a.count)), f"stream {sid}: frames lost"
        m = _match([d for _, d, _ in items], inputs, r, ref_runner)
        proof = verify_frames(r, inputs, [f for *_, f in items], runner=ref_runner)
        rows.append({"stream": sid, **m, "proof": proof.summary(), "proof_ok": proof.ok,
                     "faces": sum(len(d) for _, d, _ in items)})
        ok &= m["extra"] == 0 and m["missed"] == 0 and proof.ok
    report["nvdec_streams"] = {"streams": rows, "inexact_frames": info["inexact_frames"], "fps": info["fps"],
                               "batches": info["batches"]}
    ok &= len(rows) == a.streams
    report["ok"] = bool(ok)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_streams_check.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=1, default=str))
    print("gpu_streams_check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
