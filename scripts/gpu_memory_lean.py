"""Where the whole process's GPU memory goes at N streams, step by step, for one memory plan (issue 18).

One process per plan (memory is the process's and never shrinks back to what it was): NVML's figure for
this process (CUDA context included) after each step the streams bench takes: the CUDA context, the fp16
model, the captured graphs (GraphRunner, the plan's slots / letterbox chunk / frame buffers), a warm-up
on one stream, N decoders opened, then the peak during the N-stream run (sampled every 20 ms) and after
it, with PyTorch's reserved / allocated peaks beside. The run's detections (every stream's every frame)
are written with --save-dets, or compared with --compare-dets against another plan's: faces missing or
extra per frame, the largest box and score difference.

  python scripts/gpu_memory_lean.py --clip faces1080.mp4 --plan default --batch 8 --save-dets /tmp/ref.json
  python scripts/gpu_memory_lean.py --clip faces1080.mp4 --plan lean --set graph_slots=1 --compare-dets /tmp/ref.json

Writes memory_lean_<stem>.json to --out and prints one line per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _value(v: str):
    if v in ("True", "False"):
        return v == "True"
    if v == "None":
        return None
    try:
        return int(v)
    except ValueError:
        return v


def compare(ref: dict, got: dict) -> dict:
    """Detections per (stream, frame): faces missing / extra, largest box and score difference."""
    frames = missing = extra = 0
    box = score = 0.0
    for key, faces in ref.items():
        g = got.get(key)
        if g is None:
            continue
        frames += 1
        if len(g) != len(faces):
            missing += max(0, len(faces) - len(g))
            extra += max(0, len(g) - len(faces))
            continue
        for a, b in zip(faces, g):
            box = max(box, max(abs(x - y) for x, y in zip(a["box"], b["box"])))
            score = max(score, abs(a["score"] - b["score"]))
    return {"frames_compared": frames, "frames_not_in_reference": len(set(got) - set(ref)), "faces_missing": missing,
            "faces_extra": extra, "max_box_diff_px": box, "max_score_diff": score,
            "identical": missing == 0 and extra == 0 and box == 0.0 and score == 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", required=True)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--frames", type=int, default=300, help="frames per stream")
    ap.add_argument("--batch", type=int, default=None, help="default: the plan's, else 32")
    ap.add_argument("--plan", default="default", choices=["default", "lean"])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a plan field")
    ap.add_argument("--decoder", default="fbtool")
    ap.add_argument("--save-dets", default=None)
    ap.add_argument("--compare-dets", default=None)
    ap.add_argument("--stem", default=None)
    ap.add_argument("--out", default=".")
    a = ap.parse_args(argv)

    from toolchain.blur.pipeline import memory

    plan = memory.LEAN if a.plan == "lean" else memory.DEFAULT
    for kv in a.set:
        k, v = kv.split("=", 1)
        plan = plan.with_(**{k: _value(v)})
    if a.set:
        plan = plan.with_(name=f"{plan.name}+" + ",".join(a.set))
    memory.apply_process_settings(memory.check(plan))
    batch = a.batch or plan.batch or 32

    from toolchain.gpumon import GpuMonitor

    mon = GpuMonitor(every_s=0.02)
    import torch

    rep = {"gpu": None, "plan": plan.to_dict(), "batch": batch, "streams": a.streams, "frames_per_stream": a.frames,
           "steps": []}
    used = None

    def step(name: str, **extra):
        torch.cuda.synchronize()
        row = {"step": name, "process_mib": used(), "torch_reserved_mib": torch.cuda.memory_reserved() / 2**20,
               "torch_allocated_mib": torch.cuda.memory_allocated() / 2**20, **extra}
        rep["steps"].append(row)
        print(json.dumps(row), flush=True)

    torch.zeros(1, device="cuda")
    used = (lambda: mon.process_mb()) if mon.process_mb() else (lambda: mon.device_used_mb() - mon.baseline_mb)
    rep["gpu"] = torch.cuda.get_device_name(0)
    rep["figure"] = "process (NVML)" if mon.process_mb() else "device used minus baseline (NVML)"
    step("cuda context")

    from toolchain.blur.engines import make_engine
    from toolchain.blur.pipeline.graphs import GraphRunner
    from toolchain.blur.pipeline.streams import open_decoder, resolve_decoder, run_streams
    from toolchain.recipe import load_recipe

    recipe = load_recipe(None)
    nvdec = resolve_decoder(a.decoder, True)
    eng = make_engine(recipe, "torch", "cuda", batch=batch, precision="fp16")
    step("model (fp16)")
    probe = open_decoder(a.clip, nvdec)
    h, w = probe.height, probe.width
    del probe
    t0 = time.perf_counter()
    runner = GraphRunner(eng.model, recipe, batch, h, w, eng.dtype, fmt="nv12", download=False, blur=True,
                         slots=plan.graph_slots, chunk=plan.frame_chunk, keep_frames=plan.keep_frames)
    step("graphs captured", capture_s=time.perf_counter() - t0, graph_pool_note="static inputs/outputs + private pool")
    run_streams(runner, [open_decoder(a.clip, nvdec)], max_frames=2 * batch, plan=plan)
    torch.cuda.empty_cache()
    step("warm-up (1 stream)")
    decs = [open_decoder(a.clip, nvdec) for _ in range(a.streams)]
    step(f"{a.streams} decoders opened")
    torch.cuda.reset_peak_memory_stats()
    runner.inexact = 0
    dets: dict = {}

    def on_frame(sid, idx, d, frame):
        dets[f"{sid}:{idx}"] = d.to_json()

    with GpuMonitor(every_s=0.02, baseline_mb=mon.baseline_mb) as m:
        info = run_streams(runner, decs, max_frames=a.frames, on_frame=on_frame, plan=plan)
    s = m.summary()
    peak = s.get("gpu_mem_process_peak_mb") or s.get("gpu_mem_device_delta_peak_mb")
    step(f"{a.streams}-stream run: peak", process_mib_peak=peak,
         torch_reserved_peak_mib=torch.cuda.max_memory_reserved() / 2**20,
         torch_allocated_peak_mib=torch.cuda.max_memory_allocated() / 2**20)
    run = {k: info[k] for k in ("frames", "fps", "latency_ms_p50", "latency_ms_p99", "batch_fill", "inexact_frames",
                                "decode_threads", "pool_frames")}
    run.update({"gpu_util_mean_pct": s.get("gpu_util_mean_pct"), "nvdec_util_mean_pct": s.get("nvdec_util_mean_pct"),
                "process_mib_peak": peak, "faces": sum(len(v) for v in dets.values())})
    stats = getattr(decs[-1], "stats", None)
    if stats:
        run["last_decoder"] = {k: stats[k] for k in ("decode_surfaces", "output_surfaces", "slot_waits", "slot_wait_s")}
    rep["run"] = run
    # the process's memory every ~20 ms through the run (NVML): when the peak happens, how long it lasts
    rep["process_mib_samples"] = [round(x[3], 1) for x in m.samples]
    if a.save_dets:
        Path(a.save_dets).write_text(json.dumps(dets))
    if a.compare_dets and Path(a.compare_dets).is_file():
        rep["vs_reference"] = compare(json.loads(Path(a.compare_dets).read_text()), dets)
    print(json.dumps({"run": run, "vs_reference": rep.get("vs_reference")}), flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    stem = a.stem or plan.name.replace("+", "_").replace(",", "_").replace("=", "")
    (Path(a.out) / f"memory_lean_{stem}.json").write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
