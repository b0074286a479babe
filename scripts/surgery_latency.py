#!/usr/bin/env python3
"""onnxruntime latency before/after surgery (CPU): median of N runs at batch 1 and 4, real frames.

    python scripts/surgery_latency.py [-o RUN] [--runs 30] [--prepare-only | --measure-only]

Prepare: exports the default model (dynamo and TorchScript) into RUN, writes the surgery variants
(toolchain.surgery.run_passes) and the preprocessed real frames (inputs.npz). Measure: times every
graph round-robin (so load from other processes hits all alike) and prints a Markdown table with the
node count, the onnxruntime median and the reference post-processing median (per batch).
--measure-only needs only numpy, onnxruntime and toolchain.reference (e.g. on another machine).
Figures depend on the machine and its load; they are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

VARIANTS = {  # label -> (source file, surgery settings changes or None for the source itself)
    "export (dynamo)": ("model.onnx", None),
    "surgery raw": ("model.onnx", {}),
    "surgery decoded": ("model.onnx", {"decode": True}),
    "surgery decoded top-750": ("model.onnx", {"decode": True, "top_k": 750}),
    "export (torchscript)": ("ts.onnx", None),
    "torchscript + surgery raw": ("ts.onnx", {}),
}


def file_for(label: str) -> str:
    src, changes = VARIANTS[label]
    return src if changes is None else "latency_" + "".join(c if c.isalnum() else "_" for c in label) + ".onnx"


def prepare(out: Path) -> None:
    import numpy as np
    import onnx

    from toolchain.export import export
    from toolchain.frames import parity_frames
    from toolchain.recipe import load_recipe
    from toolchain.reference.preprocess import preprocess_batch
    from toolchain.surgery import run_passes

    recipe = load_recipe()
    if not (out / "model.onnx").is_file():
        export(recipe, out)
    if not (out / "ts.onnx").is_file():
        export(recipe, out, exporter="torchscript", name="ts.onnx", check=False)
    for label, (src, changes) in VARIANTS.items():
        if changes is not None:
            model, _ = run_passes(onnx.load(str(out / src)), recipe,
                                  settings=dataclasses.replace(recipe.surgery, **changes))
            onnx.save(model, str(out / file_for(label)))
    x, _ = preprocess_batch(parity_frames(recipe, 4), recipe)
    np.savez(out / "inputs.npz", x=x)


def interleaved_medians(fns: dict, runs: int, warmup: int = 3) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(out: Path, runs: int) -> list[dict]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    from toolchain.recipe import load_recipe
    from toolchain.reference.detections import postprocess, split_batch

    recipe = load_recipe()
    x = np.load(out / "inputs.npz")["x"]
    sessions, nodes = {}, {}
    for label in VARIANTS:
        path = out / file_for(label)
        nodes[label] = len(onnx.load(str(path)).graph.node)
        so = ort.SessionOptions()
        # Round-robin over several sessions: spinning worker threads of the session that just ran
        # would steal the cores of the next one, so spinning is off for all of them.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions[label] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rows = []
    for b in (1, 4):
        feed = {recipe.input.name: x[:b]}

        def infer(s, f=feed):
            return dict(zip([o.name for o in s.get_outputs()], s.run(None, f)))

        t_inf = interleaved_medians({k: (lambda s=s: infer(s)) for k, s in sessions.items()}, runs)
        outs = {k: infer(s) for k, s in sessions.items()}
        t_post = interleaved_medians({k: (lambda o=o: [postprocess(i, recipe) for i in split_batch(o)])
                                      for k, o in outs.items()}, runs)
        rows += [{"graph": k, "nodes": nodes[k], "batch": b, "ort_ms": round(t_inf[k], 2),
                  "post_ms": round(t_post[k], 2)} for k in sessions]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", default="runs/surgery-latency")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--measure-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.measure_only:
        prepare(out)
    if args.prepare_only:
        return
    rows = measure(out, args.runs)
    (out / "latency.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| graph | nodes | batch | onnxruntime median ms | reference post-processing median ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph']} | {r['nodes']} | {r['batch']} | {r['ort_ms']:.2f} | {r['post_ms']:.2f} |")


if __name__ == "__main__":
    main()
