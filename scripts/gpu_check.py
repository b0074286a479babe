"""Correctness of the CUDA blur path on real frames (run by scripts/bench_gpu.sh before timing).

1. postprocess_torch on the GPU vs toolchain.reference on the same raw heads (same faces, box error).
2. the pipelined CUDA job vs the CPU reference detector (frames at --size): detections matched.
3. the pixel proof (toolchain.blur.proof) on the CUDA job's output frames.
Writes gpu_check.json to --out. Works on the CPU too (--device cpu: the tensor path on CPU tensors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-npy", default=None)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=".")
    ap.add_argument("--cuda-blur", default="dense", choices=("dense", "crops"))
    a = ap.parse_args(argv)

    import torch

    from toolchain.bench import load_source_frames, make_frames, parse_size
    from toolchain.blur.app import run_frames
    from toolchain.blur.engines import make_engine
    from toolchain.blur.proof import verify_frames
    from toolchain.compare.metrics import match
    from toolchain.detector import detect_batch
    from toolchain.recipe import load_recipe
    from toolchain.reference.detections import Detections, postprocess, split_batch
    from toolchain.reference.preprocess import preprocess_batch
    from toolchain.reference.torch_port import anchors_torch, postprocess_torch
    from toolchain.runners import TorchRunner

    r = load_recipe()
    src = load_source_frames(npy=a.frames_npy)
    # Every 4th unique frame: the clips' variety (small and large faces, a negative-free mix).
    frames = make_frames(src[:: max(1, len(src) // a.count)][: a.count], a.count, parse_size(a.size))
    report: dict = {"device": a.device, "size": a.size, "frames": len(frames)}

    # 1. post-processing on the device vs the reference, same raw heads
    eng = make_engine(r, "torch", a.device, tensor_path=a.device == "cpu", batch=8, cuda_blur=a.cuda_blur)
    x, _ = preprocess_batch(list(frames[:8]), r)
    with torch.inference_mode():
        model = eng.model.float() if eng.dtype is None or eng.dtype == torch.float32 else eng.model
        outs = model(torch.from_numpy(x).to(eng.tensor_device).to(next(model.parameters()).dtype))
    o = r.outputs
    names = [o.boxes, o.scores, o.landmarks]
    raw = {n: t.float() for n, t in zip(names, outs)}
    mine = postprocess_torch(raw, r, anchors_torch(r, eng.tensor_device)).to_numpy()
    ref = [postprocess(d, r) for d in split_batch({k: v.cpu().numpy() for k, v in raw.items()})]
    same = all(len(p) == len(q) for p, q in zip(mine, ref))
    err = max((float(np.abs(p.boxes - q.boxes).max()) for p, q in zip(mine, ref) if len(p) and len(p) == len(q)),
              default=0.0)
    report["post_vs_reference"] = {"same_face_counts": same, "faces": sum(len(q) for q in ref), "max_box_err_px": err}

    # 2 + 3. the pipelined job on this device; its output frames judged by the proof
    kept: list = []
    results: list = []
    if eng.cuda:
        pinned = torch.from_numpy(frames).pin_memory()
        info = run_frames(eng, r, pinned=pinned, count=len(frames), keep=kept, results=results)
    else:
        info = run_frames(eng, r, ((i, f.copy()) for i, f in enumerate(frames)), keep=kept, results=results)
    runner = TorchRunner(r)
    ref_dets = [detect_batch([f], r, runner)[0] for f in frames]
    tp = fp = fn = 0
    errs: list = []
    for row, d in zip(results, ref_dets):
        cand = Detections(np.array([f["box"] for f in row["faces"]], dtype=np.float32).reshape(-1, 4),
                          np.array([f["score"] for f in row["faces"]], dtype=np.float32))
        m = match(d, cand, 0.5, with_masks=False)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        errs += m.box_errors
    # GPU letterboxing (torch bilinear) is not OpenCV's resize to the last bit: faces match, boxes move a little.
    report["pipeline_vs_cpu_reference"] = {"matched": tp, "extra": fp, "missed": fn,
                                           "box_err_px_p50": float(np.median(errs)) if errs else None,
                                           "box_err_px_max": max(errs, default=None)}
    proof = verify_frames(r, list(frames), kept, runner=runner)
    report["proof"] = proof.to_dict()
    report["proof"]["summary"] = proof.summary()
    report["pipeline"] = {k: info[k] for k in ("fps", "frames", "bound_by")}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "proof"}, default=str))
    print("proof:", proof.summary())
    ok = same and err < 0.01 and proof.ok
    print("gpu_check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
