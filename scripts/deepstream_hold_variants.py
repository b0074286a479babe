"""Variants of the DeepStream blur app's hold and mask rule, audited on every frame of one clip (the
MP4 by default): the experiment behind docs/deepstream.md's "Every frame of every shared clip" table.

The emulated nvinfer objects (the blur app's config, the compiled parser) and the audit judges'
detections are computed once and cached in CACHE_DIR, so one variant's audit is the hold rule, the
kernel's twin and the Laplacian measure only (1-3 min on the shared 2-core CPU). Nothing here is
shipped: each variant is a post-process of DeepStreamHold's targets, saying what a live pipeline would
have to do.

Usage: python scripts/deepstream_hold_variants.py RUN_FOLDER|INFER_CONFIG CACHE_DIR SPEC [SPEC ...]
  (RUN_FOLDER: `fbtool run`'s on the default recipe, its blur app nvinfer config; or another config file,
  e.g. one with another pre-cluster-threshold; CACHE_DIR belongs to one config)
  SPEC = HOLD,LEAD,MASK,GROW
    HOLD  frames a shadow-tracked face is held (blur.hold, 12)
    LEAD  0, or N: a delay of N frames (a queue in the custom library): a new track is blurred at its
          first box in the N frames before its first detection, and a gap of <= N frames between two
          detections of one track is filled on the line between them (fbtool blur's lead / gap)
    MASK  binary (before the live rule) | soft (the parser's own mask, not binarised) | box (the whole box) |
          feather (fbtool blur's feathered ellipse, reference/masks.py's rule, feather 0.15) |
          boxramp (1 over the box grown 1.4, a linear ramp to 0 at the box grown GROW)
    GROW  the kernel's margin (1.6 shipped; 1.4 before the live rule)
"""

from __future__ import annotations

import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

CLIP = "one-by-one-person-detection.mp4"
FEATHER = 0.15


def _cached(path: Path, make):
    if path.exists():
        return pickle.loads(path.read_bytes())
    value = make()
    path.write_bytes(pickle.dumps(value))
    return value


def _mask(kind: str, mask: np.ndarray, grow: float) -> np.ndarray:
    if kind == "binary":
        return mask
    if kind == "box":
        return np.ones_like(mask)
    if kind == "feather":  # the ellipse inscribed at 1/(1 + f) of the grid, edge 0.5, soft over r in [1-f, 1+f]
        n = mask.shape[0]
        u = (np.arange(n) + 0.5) / (n / 2) - 1
        r = np.hypot(u[None], u[:, None]) * (1 + FEATHER)
        return np.clip(0.5 + (1 - r) / (2 * FEATHER), 0, 1).astype(np.float32)
    if kind == "boxramp":  # 1 over the box grown 1.4 (the shipped margin), falling linearly to 0 at `grow`
        n = 32
        u = np.abs((np.arange(n) + 0.5) / (n / 2) - 1)
        inner = 1.4 / grow
        a = np.clip((1 - u) / max(1 - inner, 1e-6), 0, 1)
        return np.minimum(a[None], a[:, None]).astype(np.float32)
    raise ValueError(kind)


def _lead_and_gaps(targets, lead: int):
    from toolchain.nvinfer.emulation.tracker import Target

    out = [list(tg) for tg in targets]
    seen: dict[int, list[int]] = {}
    for n, tg in enumerate(out):
        for t in tg:
            if not t.held and t.id >= 0:
                seen.setdefault(t.id, []).append(n)
    for tid, frames in seen.items():
        def at(n, tid=tid):
            return next(t for t in out[n] if t.id == tid)
        first = at(frames[0])
        for f in range(max(0, frames[0] - lead), frames[0]):
            out[f].append(Target(first.obj, tid, True, 0, first.mask_from))
        for a, b in zip(frames, frames[1:]):
            gap = b - a - 1
            if not 0 < gap <= lead:
                continue
            oa, ob = at(a).obj, at(b).obj
            for k in range(1, gap + 1):
                w = k / (gap + 1)
                o = replace(oa, left=(1 - w) * oa.left + w * ob.left, top=(1 - w) * oa.top + w * ob.top,
                            width=(1 - w) * oa.width + w * ob.width, height=(1 - w) * oa.height + w * ob.height)
                out[a + k] = [t for t in out[a + k] if t.id != tid] + [Target(o, tid, True, k, "held")]
    return out


def main(run: str, cache_dir: str, specs: list[str]) -> int:
    from toolchain.blur.audit import audit_frames, default_judges
    from toolchain.blur.ops.dsblur import blur_frame
    from toolchain.frames import sample_frames
    from toolchain.media import resolve_media
    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.nvinfer.emulation.tracker import DeepStreamHold
    from toolchain.nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import BLUR_INFER_CONFIG, RunFolder

    recipe = load_recipe("retinaface_mnet025")
    frames = [f for _, _, f in sample_frames([str(resolve_media(CLIP))], per_clip=1_000_000, step=1)]
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    config = run if run.endswith(".txt") else RunFolder(run).get(BLUR_INFER_CONFIG)
    objs = _cached(cache / "objs.pkl", lambda: NvInferEmulator(
        config, parser="compiled", mux=(STREAMMUX_WIDTH, STREAMMUX_HEIGHT)).infer(frames))
    judges = default_judges()

    def detect_all():
        found = [[] for _ in judges]
        for s in range(0, len(frames), 8):
            for k, j in enumerate(judges):
                found[k] += j.detect(frames[s:s + 8])
        return found
    found = _cached(cache / "judges.pkl", detect_all)
    index = {id(f): n for n, f in enumerate(frames)}

    class Cached:  # a judge answering from the cache
        def __init__(self, k, name):
            self.k, self.name = k, name

        def detect(self, fs):
            return [found[self.k][index[id(f)]] for f in fs]
    cached = [Cached(k, j.name) for k, j in enumerate(judges)]

    for spec in specs:
        hold, lead, kind, grow = spec.split(",")
        t0 = time.perf_counter()
        targets = DeepStreamHold(int(hold), recipe.blur.track_iou, (0,)).run(objs)
        if int(lead):
            targets = _lead_and_gaps(targets, int(lead))
        outs, boxes = [], {}
        for n, (f, tg) in enumerate(zip(frames, targets)):
            # the original (soft) mask of a detection; held and lead faces keep the binary one they carry
            ob = [replace(t.obj, mask=_mask(kind, t.obj.mask, float(grow))) if kind != "soft" else t.obj for t in tg]
            if kind == "soft":
                src = {(o.left, o.top, o.width, o.height): o.mask for o in objs[n]}
                ob = [replace(o, mask=np.clip(src.get((o.left, o.top, o.width, o.height), o.mask), 0, 1))
                      for o in ob]
            outs.append(blur_frame(f, ob, grow=float(grow)) if ob else f.copy())
            b = np.array([o.box for o in ob], np.float64).reshape(-1, 4)
            c, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * float(grow)
            boxes[n] = np.concatenate([c - half, c + half], 1)
        rep, _ = audit_frames([(n, a, b) for n, (a, b) in enumerate(zip(frames, outs))], cached,
                              blurred=boxes.__getitem__)
        print(f"{spec}: {rep.summary()} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for line in rep.failures()[:40]:
            print("   ", line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
