"""FaceMesh figures for docs/contour.md: cost per face (this machine's CPU, or a GPU with --device cuda) and,
where ../shared is present, the oval vs a hand-labelled face region.

  python3 scripts/bench_facemesh.py --prepare DATA        # on a machine with ../shared: crops + weights -> DATA
  python3 scripts/bench_facemesh.py --data DATA --device cuda --out OUT   # anywhere (the GPU machine)
  python3 scripts/bench_facemesh.py --out OUT              # here: crops from ../shared, CPU, + hand labels
Writes OUT/facemesh_cost_<device>.json/.md (and OUT/contour_hand_labels.json with ../shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", metavar="DATA", help="write face crops + facemesh.pth into DATA and stop")
    ap.add_argument("--data", metavar="DATA", help="read crops + weights from DATA (made by --prepare)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--out", default="bench/results/facemesh")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batches", default="1,8,32")
    a = ap.parse_args()
    from toolchain.recipe import load_recipe

    fm = load_recipe("facemesh")
    if a.prepare:
        from toolchain.contours import face_crop_set
        from toolchain.weights import resolve_weights

        d = Path(a.prepare)
        d.mkdir(parents=True, exist_ok=True)
        from toolchain.export import export

        cs = face_crop_set(fm, fm.validation_media, 32)
        np.savez_compressed(d / "facemesh_crops.npz", x=cs.x)
        shutil.copy(resolve_weights(fm.weights), d / fm.weights.file)
        export(fm, d / "run")  # parity-checked here on real crops (the GPU machine has no media)
        shutil.copy(d / "run" / "model.onnx", d / "facemesh.onnx")
        shutil.rmtree(d / "run")
        print(f"{len(cs)} crops, {fm.weights.file} and facemesh.onnx in {d}")
        return 0
    if a.data:  # the weights are looked up (and sha256-checked) in DATA too
        os.environ["FBTOOL_WEIGHTS_MIRROR"] = str(Path(a.data).resolve())
        x = np.load(Path(a.data) / "facemesh_crops.npz")["x"]
        frame = crops = None
        onnx = Path(a.data) / "facemesh.onnx"
    else:
        from toolchain.contours import crops_for, face_crop_set
        from toolchain.detector import detect_batch
        from toolchain.media import read_frames
        from toolchain.runners import TorchRunner

        x = face_crop_set(fm, fm.validation_media, 32).x
        two = load_recipe("retinaface_mnet025_facemesh")
        frame = read_frames("classroom.gif", max_frames=1)[0]
        d = detect_batch([frame], two, TorchRunner(two))[0]
        crops = crops_for(d.boxes, d.landmarks, two.contour)
        from toolchain.export import export

        export(fm, Path(a.out) / "onnx")  # the ONNX the chain deploys (dynamic batch), parity-checked
        onnx = Path(a.out) / "onnx" / "model.onnx"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from toolchain.bench_contour import cost_per_face, hand_label_figures, table

    info = cost_per_face(x, fm, onnx, a.device, tuple(int(b) for b in a.batches.split(",")), a.repeats, frame, crops)
    import torch

    info["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                       "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" and torch.cuda.is_available() else None}
    (out / f"facemesh_cost_{a.device}.json").write_text(json.dumps(info, indent=1) + "\n")
    (out / f"facemesh_cost_{a.device}.md").write_text(f"{info['machine']}\n\n{table(info)}\n")
    print(info["machine"])
    print(table(info))
    if not a.data:
        figs = hand_label_figures()
        (out / "contour_hand_labels.json").write_text(json.dumps(figs, indent=1) + "\n")
        print(json.dumps(figs["mean"], indent=1))
    shutil.rmtree(out / "onnx", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
