"""NVIDIA's nvdsosd blur and nvinfer normalisation vs fbtool's DeepStream blur, on a GPU (issue 15).

Three steps, two machines (docs/deepstream.md, "NVIDIA's blur vs fbtool's on the H200"):

  prepare (here, CPU): 1080p frames from the shared clips (upscaled x4, and 2x2 / 3x3 mosaics for small
      and tiny faces), nvinfer's objects on them through the emulation with the COMPILED parser
      (box + 32x32 mask per face, as nvinfer attaches them), and the letterboxed network canvases.
      Writes DIR/data.npz (native tiles, not the 1080p frames: `frames()` rebuilds them bit for bit
      anywhere, in float64 numpy, so only deltas need to come back).
  device (GPU): builds nothing (run `make -C plugins/nvcheck` first); on pitched RGBA and NV12
      surfaces runs nvdsosd's blur (NVIDIA's cuosd_draw_boxblur/cuosd_apply -> render_blur_kernel) and
      fbtool's kernel (plugins/dsblur/blur.cu), compares fbtool's with its torch twin
      (toolchain/blur/ops/dsblur.py) pixel for pixel, and NVIDIA's normalisation kernels with
      toolchain/reference/preprocess.py; writes OUT/device.json and the blurred frames' deltas.
  judge (here, CPU): the blur proof (reference faces) and the independent audit (two judges) on every
      output and on `fbtool blur`'s own host blur of the same frames, per face size class.

  python scripts/dsblur_gpu.py prepare --config DS/config_infer_primary_retinaface_mnet025.txt --out D
  python scripts/dsblur_gpu.py twin --data D          # the torch twin's outputs (CPU), for `device`
  python scripts/dsblur_gpu.py device --data D --lib BUILD --out OUT
  python scripts/dsblur_gpu.py judge --data D --device-out OUT --json bench/results/dsblur_h200.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

W, H = 1920, 1080
UPSCALED = ("head-pose-face-detection-female-and-male.gif", "classroom.gif", "face-demographics-walking.gif")
MOSAIC = ("classroom.gif", "face-demographics-walking.gif", "face-demographics-walking-and-pause.gif",
          "head-pose-face-detection-female.gif", "head-pose-face-detection-female-and-male.gif",
          "people-detection.gif", "worker-zone-detection.gif", "one-by-one-person-detection.mp4", "classroom.gif")
PER_SET = 6
CLASSES = (("tiny", 0, 32), ("small", 32, 96), ("large", 96, math.inf))  # short side, frame pixels


def size_class(box) -> str:
    side = float(min(box[2] - box[0], box[3] - box[1]))
    return next(n for n, lo, hi in CLASSES if lo <= side < hi)


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear (OpenCV INTER_LINEAR's sample grid) in float64 numpy: the same bits on every machine."""
    def axis(n_out, n_in):
        u = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = np.floor(u).astype(np.int64)
        return i0, np.minimum(i0 + 1, n_in - 1), u - i0

    x0, x1, fx = axis(w, img.shape[1])
    y0, y1, fy = axis(h, img.shape[0])
    f = img.astype(np.float64)
    rows = f[y0] * (1 - fy)[:, None, None] + f[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.floor(out + 0.5).clip(0, 255).astype(np.uint8)


def frames(data) -> list[np.ndarray]:
    """The 1080p BGR frames from data.npz's tiles (tile i: source tiles[i] placed at rects[i] of frame owner[i])."""
    n = int(data["n_frames"])
    out = [np.zeros((H, W, 3), np.uint8) for _ in range(n)]
    for t, (fi, x, y, w, h) in zip(data["tiles"], data["rects"]):
        out[fi][y:y + h, x:x + w] = resize(t, int(w), int(h))
    return out


def digest(frs) -> str:
    h = hashlib.sha256()
    for f in frs:
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()[:16]


def grown(objs, s: float | None = None):
    """Each object's box grown by s (dsblur.GROW) about its centre; the mask grid stays: the contour grows."""
    from toolchain.blur.ops.dsblur import GROW, DsBlurObject

    s = GROW if s is None else s
    return [DsBlurObject(o.left + o.width * (1 - s) / 2, o.top + o.height * (1 - s) / 2, o.width * s,
                         o.height * s, o.mask) for o in objs]


def objects_of(data, i: int):
    from toolchain.blur.ops.dsblur import DsBlurObject

    sel = np.flatnonzero(data["obj_frame"] == i)
    return [DsBlurObject(*map(float, data["obj_box"][j]), data["obj_mask"][j]) for j in sel]


# --------------------------------------------------------------------------------------------- prepare
def prepare(args) -> None:
    from toolchain.media import read_frames
    from toolchain.nvinfer.emulation import NvInferEmulator

    tiles, rects = [], []
    n = 0
    for clip in UPSCALED:
        src = read_frames(clip)
        for j in np.linspace(0, len(src) - 1, PER_SET).round().astype(int):
            tiles.append(src[j])
            rects.append((n, 0, 0, W, H))
            n += 1
    for grid in (2, 3):
        tw, th = W // grid, H // grid
        srcs = [read_frames(c, max_frames=200) for c in MOSAIC[:grid * grid]]
        for f in range(PER_SET):
            for c, src in enumerate(srcs):
                tiles.append(src[(f * 7 + c * 3) % len(src)])
                rects.append((n, (c % grid) * tw, (c // grid) * th, tw, th))
            n += 1
    # one array per tile size (the MP4's frames are larger than the GIFs')
    data = {"n_frames": n, "rects": np.array(rects, np.int64)}
    tmp = {"n_frames": n, "rects": data["rects"], "tiles": tiles}
    frs = frames(tmp)
    emu = NvInferEmulator(args.config, parser="compiled", mux=(W, H))
    objs = []
    for i in range(0, n, 4):
        objs += emu.infer(frs[i:i + 4])
    ob_f, ob_b, ob_m = [], [], []
    for i, fo in enumerate(objs):
        for o in fo:
            if o.mask is None:
                raise SystemExit("an object without a mask: is output-instance-mask=1 in the config?")
            ob_f.append(i)
            ob_b.append((o.left, o.top, o.width, o.height))
            ob_m.append(o.mask.astype(np.float32))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tile_arr = np.empty(len(tiles), dtype=object)
    tile_arr[:] = tiles
    np.savez_compressed(out / "data.npz", n_frames=n, rects=data["rects"], tiles=tile_arr,
                        obj_frame=np.array(ob_f, np.int64), obj_box=np.array(ob_b, np.float32),
                        obj_mask=np.stack(ob_m), frames_sha=digest(frs), config=Path(args.config).read_text())
    sides = [min(b[2], b[3]) for b in ob_b]
    print(f"{n} frames, {len(ob_f)} objects; per class: "
          + ", ".join(f"{c} {sum(size_class((0, 0, s, s)) == c for s in sides)}" for c, _, _ in CLASSES))


# ---------------------------------------------------------------------------------------------- device
def _pitched(torch, img: np.ndarray, pitch: int):
    """A device surface [rows, pitch] holding img's rows (pitch > the row's bytes: as NvBufSurface)."""
    rows = img.shape[0]
    flat = img.reshape(rows, -1)
    buf = torch.full((rows, pitch), 0xA5, dtype=torch.uint8, device="cuda")  # padding poisoned
    buf[:, : flat.shape[1]] = torch.from_numpy(np.ascontiguousarray(flat)).cuda()
    return buf


def _unpitch(buf, shape) -> np.ndarray:
    row = int(np.prod(shape[1:]))
    return buf[:, :row].cpu().numpy().reshape(shape)


def to_nv12(bgr: np.ndarray):
    """BGR -> NV12 planes (Y [H, W], UV [H/2, W/2, 2]) in integer numpy, BT.601 video range as cuOSD's
    rgb2yuv, chroma from each 2x2 block's mean: the same bits on every machine."""
    b, g, r = (bgr[..., c].astype(np.int64) for c in range(3))
    y = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16).astype(np.uint8)
    h, w = bgr.shape[:2]
    q = bgr.astype(np.int64).reshape(h // 2, 2, w // 2, 2, 3).sum((1, 3))
    b, g, r = ((q[..., c] + 2) // 4 for c in range(3))
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
    return y, np.stack([u, v], -1).astype(np.uint8)


def twin(args) -> None:
    """The torch twin's outputs for every frame (here, CPU), as deltas: the device step compares."""
    from toolchain.blur.ops import dsblur

    data = np.load(Path(args.data) / "data.npz", allow_pickle=True)
    frs = frames(data)
    out = {"rgba": [], "rgba_g1": [], "y": [], "uv": []}
    for i, bgr in enumerate(frs):
        objs = objects_of(data, i)
        out["rgba"].append(dsblur.blur_frame(bgr, objs) ^ bgr)
        out["rgba_g1"].append(dsblur.blur_frame(bgr, objs, grow=1.0) ^ bgr)
        y, uv = to_nv12(bgr)
        ry, ruv = dsblur.blur_nv12(y, uv, objs)
        out["y"].append(ry.numpy() ^ y)
        out["uv"].append(ruv.numpy() ^ uv)
    np.savez_compressed(Path(args.data) / "twin.npz", **{k: np.stack(v) for k, v in out.items()})


def device(args) -> None:
    import ctypes

    import torch

    from toolchain.blur.ops.dsblur import c_objects
    from toolchain.reference.preprocess import normalize, scale_frame

    data = np.load(Path(args.data) / "data.npz", allow_pickle=True)
    frs = frames(data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "frames_sha_ok": digest(frs) == str(data["frames_sha"]), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                            time.gmtime())}
    print(json.dumps(res), flush=True)
    lib = Path(args.lib)
    ds = ctypes.CDLL(str(lib / "libfbtool_dsblur.so"))
    ds1 = ctypes.CDLL(str(lib / "libfbtool_dsblur_g1.so"))  # the same kernel without the margin
    nv = ctypes.CDLL(str(lib / "libnvcheck.so"))
    stream = torch.cuda.current_stream()
    sp = ctypes.c_void_p(stream.cuda_stream)

    # 1. nvinfer's normalisation on fbtool's letterboxed canvas, with the config's values.
    conv = []
    cfg = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in str(data["config"]).splitlines())
           if v and not k.startswith("#")}
    scale = float(cfg["net-scale-factor"])
    offsets = [float(v) for v in cfg["offsets"].split(";")]
    bgr_net = cfg["model-color-format"] == "1"
    net_w, net_h = (int(v) for v in cfg["infer-dims"].split(";")[:0:-1])  # C;H;W -> W, H
    variants = [("emitted", scale, offsets, bgr_net), ("stress: 1/255, 0.5-offsets, RGB", 1 / 255.0,
                                                       [0.5, 127.5, 255.0], False)]
    for name, sc, off, bgr in variants:
        worst = 0.0
        for fi in range(0, len(frs), 5):
            canvas, _ = scale_frame(frs[fi], net_w, net_h, True, cfg.get("symmetric-padding") == "1")
            ref = normalize(canvas, "bgr" if bgr else "rgb", off, sc)
            for ch in (3, 4):  # RGB surface (dGPU path) and RGBA (VIC path)
                rgb = canvas[:, :, ::-1]
                img = rgb if ch == 3 else np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], -1)
                surf = _pitched(torch, img, -(-net_w * ch // 256) * 256 + 256)
                o = torch.full((3, net_h, net_w), float("nan"), dtype=torch.float32, device="cuda")
                offs = (ctypes.c_float * 3)(*off)
                rc = nv.nvcheck_convert(ctypes.c_void_p(o.data_ptr()), ctypes.c_void_p(surf.data_ptr()), net_w,
                                        net_h, surf.shape[1], ch, int(bgr), ctypes.c_float(sc), offs, sp)
                assert rc == 0, rc
                worst = max(worst, float(np.abs(o.cpu().numpy() - ref).max()))
        conv.append({"variant": name, "net_scale_factor": sc, "offsets": off, "network_bgr": bgr,
                     "max_abs_diff": worst, "ok": worst <= 1e-5, "frames": len(range(0, len(frs), 5))})
        print(conv[-1], flush=True)
    res["conversion"] = conv

    # 2. the blurs on pitched surfaces.
    methods = {"nvidia": [], "nvidia_grown": [], "fbtool": [], "fbtool_g1": []}
    refs = np.load(Path(args.data) / "twin.npz")  # the torch twin's outputs (step `twin`, CPU)
    twin = {k: [0, 0, 0] for k in ("rgba", "rgba_g1", "nv12_y", "nv12_uv")}  # pixels differing, max, pixels
    times = {"nvidia_rgba": [], "fbtool_rgba": [], "fbtool_nv12": []}
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    pitch4 = -(-W * 4 // 512) * 512 + 512
    pitch1 = -(-W // 512) * 512 + 512
    for i, bgr in enumerate(frs):
        objs = objects_of(data, i)
        rgba = np.concatenate([bgr, np.full_like(bgr[..., :1], 255)], -1)  # channel order does not matter
        for name, ob in (("nvidia", objs), ("nvidia_grown", grown(objs)), ("fbtool", objs), ("fbtool_g1", objs)):
            arr, keep = c_objects(ob)
            surf = _pitched(torch, rgba, pitch4)
            torch.cuda.synchronize()
            ev0.record(stream)
            if name.startswith("nvidia"):
                rc = nv.nvcheck_osd_blur(ctypes.c_void_p(surf.data_ptr()), None, W, pitch4, H, 0, arr, len(ob), sp)
            else:
                rc = (ds if name == "fbtool" else ds1).fbtool_dsblur_rgba(ctypes.c_void_p(surf.data_ptr()), pitch4,
                                                                          W, H, arr, len(ob), sp)
            ev1.record(stream)
            torch.cuda.synchronize()
            assert rc == 0, (name, rc)
            if name in ("nvidia", "fbtool"):
                times[f"{name}_rgba"].append(ev0.elapsed_time(ev1))
            got = _unpitch(surf, rgba.shape)
            pad = surf[:, W * 4:]
            assert bool((pad == 0xA5).all()), f"{name} wrote into the pitch padding"
            methods[name].append(np.bitwise_xor(got[..., :3], bgr))
            if name.startswith("fbtool"):
                key = "rgba" if name == "fbtool" else "rgba_g1"
                ref = bgr ^ refs[key][i]
                d = np.abs(ref.astype(int) - got[..., :3].astype(int))
                twin[key][0] += int((d.max(-1) > 0).sum())
                twin[key][1] = max(twin[key][1], int(d.max()))
                twin[key][2] += d.shape[0] * d.shape[1]
                assert bool((got[..., 3] == 255).all()), "alpha changed"
        # NV12 (pitch-linear, Y and UV planes of one pitch, as NvBufSurface lays them out)
        y, uv = to_nv12(bgr)
        ys, uvs = _pitched(torch, y, pitch1), _pitched(torch, uv, pitch1)
        arr, keep = c_objects(objs)
        ev0.record(stream)
        rc = ds.fbtool_dsblur_nv12(ctypes.c_void_p(ys.data_ptr()), pitch1, ctypes.c_void_p(uvs.data_ptr()), pitch1,
                                   W, H, arr, len(objs), sp)
        ev1.record(stream)
        torch.cuda.synchronize()
        assert rc == 0, rc
        times["fbtool_nv12"].append(ev0.elapsed_time(ev1))
        ry, ruv = y ^ refs["y"][i], uv ^ refs["uv"][i]
        for key, ref, got in (("nv12_y", ry, _unpitch(ys, y.shape)), ("nv12_uv", ruv, _unpitch(uvs, uv.shape))):
            d = np.abs(ref.astype(int) - got.astype(int)).reshape(got.shape[0], got.shape[1], -1)
            twin[key][0] += int((d.max(-1) > 0).sum())
            twin[key][1] = max(twin[key][1], int(d.max()))
            twin[key][2] += d.shape[0] * d.shape[1]
        print(f"frame {i}: {len(objs)} objects", flush=True)
    res["twin"] = {k: {"pixels_differing": v[0], "max_abs_diff": v[1], "pixels": v[2]} for k, v in twin.items()}
    res["kernel_ms_median"] = {k: float(np.median(v)) for k, v in times.items()}
    res["objects"] = int(len(data["obj_frame"]))
    for name, deltas in methods.items():
        np.savez_compressed(out / f"delta_{name}.npz", delta=np.stack(deltas))
    (out / "device.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("twin", "kernel_ms_median", "conversion")}, indent=1))


# ----------------------------------------------------------------------------------------------- judge
class _CachedJudge:
    """An audit judge whose detections of the ORIGINAL frames are computed once for every output."""

    def __init__(self, judge):
        self.inner, self.name, self.memo = judge, judge.name, {}

    def detect(self, frs):
        keys = [hashlib.sha1(f.tobytes()).hexdigest() for f in frs]
        todo = [(k, f) for k, f in zip(keys, frs) if k not in self.memo]
        if todo:
            for (k, _), d in zip(todo, self.inner.detect([f for _, f in todo])):
                self.memo[k] = d
        return [self.memo[k] for k in keys]


def _covered(data, face) -> bool:
    """Whether nvinfer attached an object to this face (the face's centre inside an object's box): a
    face without one is the detector's miss, which no blur can fix."""
    cx, cy = (face["box"][0] + face["box"][2]) / 2, (face["box"][1] + face["box"][3]) / 2
    return any(o.left <= cx <= o.left + o.width and o.top <= cy <= o.top + o.height
               for o in objects_of(data, face["frame"]))


def _per_class(faces, data=None) -> dict:
    """Per size class: faces, judged, leaks, worst / median detail drop. With `data` (the audit), only
    faces nvinfer attached an object to; the others are counted as `no_object` (and their leaks)."""
    out = {}
    for name, _, _ in CLASSES:
        fs = [f for f in faces if size_class(f["box"]) == name]
        miss = [] if data is None else [f for f in fs if not _covered(data, f)]
        fs = [f for f in fs if f not in miss]
        judged = [f["drop"] for f in fs if f["judged"]]
        out[name] = {"faces": len(fs), "judged": len(judged), "leaks": sum(d < 0.9 for d in judged),
                     "worst_drop": min(judged) if judged else None,
                     "median_drop": float(np.median(judged)) if judged else None}
        if data is not None:
            out[name]["no_object"] = len(miss)
            out[name]["no_object_leaks"] = sum(f["judged"] and f["drop"] < 0.9 for f in miss)
    return out


def host_blur(recipe, frame, dets):
    """`fbtool blur`'s host blur of one frame (no tracker: single frames): recall-first geometry + modes."""
    from types import SimpleNamespace

    from toolchain.blur.ops.modes import anonymise
    from toolchain.blur.ops.recall import blur_geometry

    bl, m = recipe.blur, recipe.mask
    faces = [SimpleNamespace(box=dets.boxes[j], landmarks=None if dets.landmarks is None else dets.landmarks[j],
                             score=float(dets.scores[j])) for j in range(len(dets.boxes))]
    out = frame.copy()
    if faces:
        boxes, lms, _ = blur_geometry(faces, bl.mask_scale, recipe.thresholds.score, recipe.outputs.num_landmarks or 5)
        anonymise(out, boxes, lms, bl.mode, bl.blocks_per_face, m.feather, m.max_tilt_deg, inplace=True)
    return out


def judge(args) -> None:
    from toolchain.blur.audit import audit_frames, default_judges
    from toolchain.blur.proof import ProofReport, check_frame
    from toolchain.detector import detect_batch
    from toolchain.recipe import load_recipe
    from toolchain.runners import TorchRunner

    data = np.load(Path(args.data) / "data.npz", allow_pickle=True)
    frs = frames(data)
    dev_out = Path(args.device_out)
    dev = json.loads((dev_out / "device.json").read_text())
    recipe = load_recipe()
    runner = TorchRunner(recipe)
    ref = [detect_batch([f], recipe, runner)[0] for f in frs]
    low = [detect_batch([f], recipe, runner, score_threshold=recipe.blur.score)[0] for f in frs]
    names = args.methods.split(",")
    outputs = {name: [f ^ d for f, d in zip(frs, np.load(dev_out / f"delta_{name}.npz")["delta"])]
               for name in names if name != "fbtool_blur_host"}
    if "fbtool_blur_host" in names:
        outputs["fbtool_blur_host"] = [host_blur(recipe, f, d) for f, d in zip(frs, low)]
    judges = [_CachedJudge(j) for j in default_judges()]
    result = {"device": dev, "frames": len(frs), "classes_px": {n: [lo, None if math.isinf(hi) else hi]
                                                                 for n, lo, hi in CLASSES}, "methods": {}}
    for name, outs in outputs.items():
        t = time.time()
        proof = ProofReport()
        for i, (a, b) in enumerate(zip(frs, outs)):
            check_frame(proof, i, a, b, ref[i], recipe.mask.max_tilt_deg)
        audit, _ = audit_frames(((i, a, b) for i, (a, b) in enumerate(zip(frs, outs))), judges,
                                blurred=lambda i: np.array([[o.left, o.top, o.left + o.width, o.top + o.height]
                                                            for o in grown(objects_of(data, i))]).reshape(-1, 4))
        result["methods"][name] = {
            "proof": {"ok": proof.ok, "summary": proof.summary(), "per_class": _per_class(proof.faces),
                      "psnr_min_db": proof.psnr_min},
            "audit": {"ok": audit.ok, "summary": audit.summary(), "per_class": _per_class(audit.judged, data),
                      "leaks": audit.failures()[:10]}}
        print(f"{name} ({time.time() - t:.0f} s)\n  proof: {proof.summary()}\n  audit: {audit.summary()}", flush=True)
        for c in ("proof", "audit"):
            print(f"  {c} per class: {json.dumps(result['methods'][name][c]['per_class'])}", flush=True)
    Path(args.json).write_text(json.dumps(result, indent=1, default=float) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    t = sub.add_parser("twin")
    t.add_argument("--data", required=True)
    d = sub.add_parser("device")
    d.add_argument("--data", required=True)
    d.add_argument("--lib", required=True)
    d.add_argument("--out", required=True)
    j = sub.add_parser("judge")
    j.add_argument("--data", required=True)
    j.add_argument("--device-out", required=True)
    j.add_argument("--json", required=True)
    j.add_argument("--methods", default="nvidia,nvidia_grown,fbtool,fbtool_g1,fbtool_blur_host",
                   help="outputs to judge: the device's deltas (delta_NAME.npz) and/or fbtool_blur_host")
    a = ap.parse_args(argv)
    {"prepare": prepare, "twin": twin, "device": device, "judge": judge}[a.cmd](a)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
