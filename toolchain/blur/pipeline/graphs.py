"""The CUDA stage as one CUDA graph per batch: no host syncs, a constant number of launches.

The pipelined CUDA engine (stages.py) issued ~550 kernel launches and several host syncs per batch
from Python and ran at ~3% of its model's speed (docs/bench.md: host-bound). Here everything after
the frames land on the GPU has fixed shapes, so it is captured once and replayed:

  [NV12 -> BGR (kernels.nv12_to_bgr)] -> letterbox + normalise (gpu.letterbox_torch) -> model ->
  decode (float64, as the reference) -> the best `cand` candidates above the threshold (stable sort)
  -> greedy NMS as a fixed number of batched fixed-point steps -> top-k -> the first `max_faces` kept
  rows -> frame pixels -> blur: pyramid of pooled copies (ops/dense.py) + one composite kernel
  (kernels.composite: the reference mask union, blended in place).

Sync-free means fixed sizes, so each frame also gets an `exact` flag, computed on the GPU and read with
its detections: False when it had more than `cand` candidates above the threshold, more than
`max_faces` kept faces, or NMS had not reached its fixed point in `nms_steps` steps. Where exact is
True the detections are the reference's (tests/test_graphs.py); the runner counts the frames where it
is not (0 in every measured run, docs/bench.md).

Without CUDA the same body runs eagerly on CPU tensors (use_graph=False): that is what the tests check
against toolchain.reference.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ...reference.torch_port import TorchDetections, _iou, anchors_torch, letterbox_torch, to_frame_torch


def candidates_fixed(outputs: dict, recipe, anchors, cand: int, width: int | None = None,
                     height: int | None = None):
    """Raw heads -> the `cand` best candidates per frame (network pixels), valid mask, exact flag.

    The reference keeps up to pre_nms_top_k candidates above the threshold, sorted stably by score;
    with at most `cand` of them the first `cand` rows of the same stable sort are exactly those.
    """
    import torch

    width = width or recipe.input.width
    height = height or recipe.input.height
    o, t = recipe.outputs, recipe.thresholds
    loc, probs = outputs[o.boxes], outputs[o.scores]
    scores = probs[..., 1] if probs.shape[-1] > 1 else probs[..., 0]
    b, n = scores.shape
    kc = min(cand, n, t.pre_nms_top_k)
    above = scores > t.score
    exact = above.sum(1) <= kc
    masked = torch.where(above, scores, torch.full_like(scores, float("-inf")))
    vals, idx = torch.sort(masked, dim=1, descending=True, stable=True)
    vals, idx = vals[:, :kc], idx[:, :kc]
    valid = torch.isfinite(vals)
    a = anchors[idx]
    var0, var1 = recipe.anchors.variance
    d = torch.gather(loc, 1, idx[..., None].expand(-1, -1, 4)).double()
    c = a[..., :2] + d[..., :2] * var0 * a[..., 2:]
    wh = a[..., 2:] * torch.exp(d[..., 2:] * var1)
    lo, hi = c - wh / 2, c + wh / 2  # scaled with Python floats: no host tensor copied inside a capture
    boxes = torch.stack([lo[..., 0] * width, lo[..., 1] * height, hi[..., 0] * width, hi[..., 1] * height], -1).float()
    lms = None
    if recipe.has_landmarks and o.landmarks in outputs:
        raw = outputs[o.landmarks]
        nl = raw.shape[-1] // 2
        ldm = torch.gather(raw, 1, idx[..., None].expand(-1, -1, raw.shape[-1])).double().reshape(b, kc, nl, 2)
        pt = a[:, :, None, :2] + ldm * var0 * a[:, :, None, 2:]
        lms = torch.stack([pt[..., 0] * width, pt[..., 1] * height], -1).float()
    scores_out = torch.where(valid, vals, torch.zeros_like(vals))
    return boxes, scores_out, lms, valid, exact


def nms_fixed(boxes, valid, iou_threshold: float, top_k: int = -1, steps: int = 12):
    """Greedy NMS without host syncs: `steps` Jacobi steps of keep[j] = valid[j] and no kept earlier box
    overlaps j by more than the threshold. The fixed point is unique and is the sequential greedy result
    (gpu.greedy_nms); converged[b] says frame b reached it (keep after the last step == before it)."""
    import torch

    k = boxes.shape[1]
    if k == 0:
        return valid.clone(), torch.ones(valid.shape[:1], dtype=torch.bool, device=valid.device)
    earlier = torch.ones((k, k), dtype=torch.bool, device=boxes.device).triu(1)
    sup = ((_iou(boxes) > iou_threshold) & earlier & valid[:, :, None] & valid[:, None, :]).to(torch.float32)
    keep = valid
    prev = keep
    for _ in range(steps):
        prev = keep
        hits = torch.bmm(keep.to(torch.float32)[:, None, :], sup)[:, 0]  # kept suppressors of each row
        keep = valid & (hits == 0)
    converged = (keep == prev).all(1)
    if top_k > 0:
        keep = keep & (keep.cumsum(1) <= top_k)
    return keep, converged


def compact(dets: TorchDetections, max_faces: int):
    """The first `max_faces` kept rows per frame (order kept: best first), and whether nothing was cut."""
    import torch

    keep = dets.keep
    m = min(max_faces, keep.shape[1])
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :m]
    g = lambda t, extra: torch.gather(t, 1, order.reshape(*order.shape, *([1] * extra)).expand(  # noqa: E731
        *order.shape, *t.shape[2:]))
    out = TorchDetections(g(dets.boxes, 1), g(dets.scores, 0),
                          None if dets.landmarks is None else g(dets.landmarks, 2), g(keep, 0))
    return out, keep.sum(1) <= m


def detect_fixed(frames, model, recipe, anchors, dtype, cand: int = 256, max_faces: int = 64, nms_steps: int = 12,
                 chunk: int = 8):
    """uint8 BGR [B, H, W, 3] -> (TorchDetections in frame pixels, [B, max_faces] rows, exact [B]).
    chunk: frames letterboxed at once (each a float16 copy of the frame; per-frame ops: same result)."""
    x, lb = letterbox_torch(frames, recipe, chunk=chunk, dtype=dtype)
    if x.is_cuda:
        import torch

        x = x.contiguous(memory_format=torch.channels_last)
    o = recipe.outputs
    names = [o.boxes, o.scores] + ([o.landmarks] if o.landmarks else [])
    outs = {n: t.float() for n, t in zip(names, model(x))}
    boxes, scores, lms, valid, exact = candidates_fixed(outs, recipe, anchors, cand)
    t = recipe.thresholds
    keep, converged = nms_fixed(boxes, valid, t.nms_iou, t.top_k, nms_steps)
    dets, fits = compact(TorchDetections(boxes, scores, lms, keep), max_faces)
    return to_frame_torch(dets, lb), exact & converged & fits


def blur_fixed(frames, dets: TorchDetections, feather: float, max_tilt_deg: float, force_torch: bool = False,
               chunk: int | None = None) -> None:
    """ops.dense's pyramid blur + kernels.composite, in place, fixed shapes (graph-capturable). chunk: frames
    pooled at once (dense._pool_base's full-size int16 temporary; same result for any chunk)."""
    import torch

    from ..ops.dense import _pool_base, blurred_levels, grid_factor, level_index
    from ..ops.kernels import composite, face_table
    from ..ops.torch import ellipse_params_torch, frame_factors

    _, h, w, _ = frames.shape
    f0 = grid_factor(h, w)
    dtype = torch.float16 if frames.is_cuda else torch.float32
    faces = face_table(ellipse_params_torch(dets.boxes, dets.landmarks, max_tilt_deg), dets.keep, feather)
    blurred = blurred_levels(_pool_base(frames, f0, dtype, chunk), f0, level_index(frame_factors(dets), f0))
    composite(frames, blurred.permute(0, 2, 3, 1).contiguous(), faces, f0, feather, force_torch=force_torch)


@dataclass
class Outputs:
    """A batch's results on the device (static buffers of one graph)."""

    boxes: object
    scores: object
    landmarks: object
    keep: object
    exact: object


class GraphedStage:
    """One captured batch: static input (`src`: BGR [B, H, W, 3] or NV12 [B, H*3/2, W]), static outputs
    (`frames`: the blurred BGR frames; `out`: detections). `replay()` runs the whole stage.

    keep_frames=False (NV12 input only; nothing may read `frames` after a replay): the BGR frames are an
    intermediate of the graph, in its private memory pool, which GraphRunner's slots share, instead of a
    static buffer per slot (blur/pipeline/memory.py). chunk: frames at once through the full-size temporaries
    (the letterbox's float16 copy, the blur's int16 copy before pooling)."""

    def __init__(self, model, recipe, batch: int, height: int, width: int, dtype=None, fmt: str = "bgr",
                 cand: int = 256, max_faces: int = 64, nms_steps: int = 12, blur: bool = True,
                 use_graph: bool | None = None, pool=None, stream=None, chunk: int = 8, keep_frames: bool = True):
        import torch

        self.model, self.recipe, self.batch, self.h, self.w = model, recipe, batch, height, width
        self.fmt, self.cand, self.max_faces, self.nms_steps, self.blur = fmt, cand, max_faces, nms_steps, blur
        self.chunk = chunk
        self.keep_frames = keep_frames or fmt != "nv12"
        dev = next(model.parameters()).device
        self.device = dev
        self.dtype = dtype or torch.float32
        self.anchors = anchors_torch(recipe, dev)
        if fmt == "nv12":
            self.src = torch.zeros((batch, height * 3 // 2, width), dtype=torch.uint8, device=dev)
            self.frames = None
            if self.keep_frames:
                self.frames = torch.zeros((batch, height, width, 3), dtype=torch.uint8, device=dev)
        elif fmt == "bgr":
            self.src = torch.zeros((batch, height, width, 3), dtype=torch.uint8, device=dev)
            self.frames = self.src  # blurred in place
        else:
            raise ValueError(f"unknown frame format {fmt!r}")
        self.use_graph = dev.type == "cuda" if use_graph is None else use_graph
        self.graph = None
        self.out: Outputs | None = None
        if self.use_graph:
            self._capture(pool, stream)

    def _body(self) -> Outputs:
        import torch

        from ..ops.kernels import nv12_to_bgr

        m = self.recipe.mask
        with torch.inference_mode():
            frames = self.frames
            if self.fmt == "nv12":
                if frames is None:  # an intermediate: allocated from the graph's pool at capture
                    frames = torch.empty((self.batch, self.h, self.w, 3), dtype=torch.uint8, device=self.device)
                nv12_to_bgr(self.src, out=frames)
            dets, exact = detect_fixed(frames, self.model, self.recipe, self.anchors, self.dtype, self.cand,
                                       self.max_faces, self.nms_steps, self.chunk)
            if self.blur:
                blur_fixed(frames, dets, m.feather, m.max_tilt_deg, chunk=self.chunk)
        return Outputs(dets.boxes, dets.scores, dets.landmarks, dets.keep, exact)

    def _capture(self, pool, stream) -> None:
        import torch

        s = stream or torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):  # warm-up outside the capture: cuDNN/cuBLAS handles, Triton compilation
                self._body()
        s.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool, stream=s):
            self.out = self._body()
        self.pool = self.graph.pool()

    def replay(self) -> Outputs:
        """Run the stage on `src` (on the current stream)."""
        if self.graph is not None:
            self.graph.replay()
            return self.out
        self.out = self._body()
        return self.out


def outputs_to_numpy(host: dict, n: int) -> tuple[list, int]:
    """Host copies of a batch's Outputs -> (reference Detections for the first n frames, inexact frames)."""
    from ...reference.detections import Detections

    keep = host["keep"]
    res = []
    for b in range(n):
        k = keep[b]
        res.append(Detections(host["boxes"][b][k], host["scores"][b][k],
                              None if host["landmarks"] is None else host["landmarks"][b][k]))
    return res, int((~host["exact"][:n]).sum())


@dataclass
class _Slot:
    stage: GraphedStage
    host_out: dict  # pinned detections
    host_frames: object = None  # pinned [B, H, W, 3] when frames are downloaded
    up: object = None
    done: object = None
    down: object = None
    meta: dict = field(default_factory=dict)


class GraphRunner:
    """Drives `slots` captured stages round-robin from one thread: upload (own stream) -> replay
    (compute stream) -> detections (and frames, when downloading) to pinned memory (own stream), each
    step ordered by events; the host waits only for the batch `slots` batches back."""

    def __init__(self, model, recipe, batch: int, height: int, width: int, dtype=None, fmt: str = "bgr",
                 slots: int = 3, download: bool = True, blur: bool = True, **kw):
        import torch

        self.cuda = next(model.parameters()).device.type == "cuda"
        self.batch, self.download = batch, download
        self.inexact = 0
        if self.cuda:
            self.compute, self.h2d, self.d2h = torch.cuda.Stream(), torch.cuda.Stream(), torch.cuda.Stream()
        if download:
            kw["keep_frames"] = True  # the blurred frames are read after the replay
        pool = None
        self.slots: list[_Slot] = []
        for _ in range(slots):
            st = GraphedStage(model, recipe, batch, height, width, dtype, fmt, blur=blur, pool=pool,
                              stream=self.compute if self.cuda else None, **kw)
            pool = getattr(st, "pool", None)  # one memory pool: the graphs replay one after another
            out = st.out or st.replay()
            pin = (lambda t: t.pin_memory()) if self.cuda else (lambda t: t)
            host_out = {k: (None if getattr(out, k) is None else pin(torch.empty_like(getattr(out, k), device="cpu")))
                        for k in ("boxes", "scores", "landmarks", "keep", "exact")}
            frames = pin(torch.empty((batch, height, width, 3), dtype=torch.uint8)) if download else None
            self.slots.append(_Slot(st, host_out, frames))
        self.pending: deque = deque()
        self.turn = 0

    def _event(self, stream):
        import torch

        if not self.cuda:
            return None
        ev = torch.cuda.Event()
        ev.record(stream)
        return ev

    def submit(self, fill, n: int, meta: dict, finish) -> None:
        """Queue one batch: `fill(src_view)` enqueues the copy of n frames into the stage's static input
        (on the upload stream); `finish(slot)` is called once its results are on the host."""
        import contextlib

        import torch

        if len(self.pending) == len(self.slots):
            self._finish(self.pending.popleft(), finish)
        slot = self.slots[self.turn]
        self.turn = (self.turn + 1) % len(self.slots)
        use = torch.cuda.stream if self.cuda else (lambda s: contextlib.nullcontext())
        with use(self.h2d if self.cuda else None):
            fill(slot.stage.src[:n])
            slot.up = self._event(self.h2d if self.cuda else None)
        with use(self.compute if self.cuda else None):
            if self.cuda:
                self.compute.wait_event(slot.up)
            out = slot.stage.replay()
            slot.done = self._event(self.compute if self.cuda else None)
        with use(self.d2h if self.cuda else None):
            if self.cuda:
                self.d2h.wait_event(slot.done)
            for k, h in slot.host_out.items():
                if h is not None:
                    h.copy_(getattr(out, k), non_blocking=True)
            if slot.host_frames is not None:
                slot.host_frames[:n].copy_(slot.stage.frames[:n], non_blocking=True)
            slot.down = self._event(self.d2h if self.cuda else None)
        slot.meta = dict(meta, n=n)
        self.pending.append(slot)

    def _finish(self, slot: _Slot, finish) -> None:
        if slot.down is not None:
            slot.down.synchronize()
        finish(slot)

    def drain(self, finish) -> None:
        while self.pending:
            self._finish(self.pending.popleft(), finish)

    def detections(self, slot: _Slot) -> list:
        dets, bad = outputs_to_numpy({k: (None if v is None else v.numpy()) for k, v in slot.host_out.items()},
                                     slot.meta["n"])
        self.inexact += bad
        return dets


def run_host_frames(runner: GraphRunner, pinned, count: int, results: list | None = None, keep: list | None = None,
                    write=None) -> dict:
    """Host frames (pinned [N, H, W, 3], cycled) through the graphed stage: the bench's host-frames mode.

    Frames go host -> GPU -> host (downloaded when the runner downloads), as the pipelined engine does.
    """
    n_src = pinned.shape[0]
    b = runner.batch
    latencies: list[float] = []

    def finish(slot):
        dets = runner.detections(slot)
        now = time.perf_counter()
        for j in range(slot.meta["n"]):
            if results is not None:
                results.append({"frame": slot.meta["index"][j], "faces": dets[j].to_json()})
            if slot.host_frames is not None:
                f = slot.host_frames[j].numpy()
                if write is not None:
                    write(f)
                if keep is not None:
                    keep.append(np.array(f))
            latencies.append(now - slot.meta["t0"])

    t_start = time.perf_counter()
    for s in range(0, count, b):
        n = min(b, count - s)
        rows = [i % n_src for i in range(s, s + n)]
        contiguous = rows == list(range(rows[0], rows[0] + n))

        def fill(dst, rows=rows, contiguous=contiguous):
            if contiguous:
                dst.copy_(pinned[rows[0]: rows[0] + len(rows)], non_blocking=True)
            else:  # wraps around the clip: two copies
                for i, r in enumerate(rows):
                    dst[i].copy_(pinned[r], non_blocking=True)

        runner.submit(fill, n, {"index": list(range(s, s + n)), "t0": time.perf_counter()}, finish)
    runner.drain(finish)
    wall = time.perf_counter() - t_start
    lat = np.asarray(latencies or [0.0]) * 1000
    return {"frames": len(latencies), "wall_s": wall, "fps": len(latencies) / wall if wall > 0 else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "inexact_frames": runner.inexact, "stages": [], "bound_by": "gpu stage (graphed)"}
