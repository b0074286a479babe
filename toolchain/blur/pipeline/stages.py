"""The blur job's stages, for the two engines, as pipeline.Stage generator transforms.

Host engine (onnxruntime, torch-cpu, TensorRT/nvinfer runners that speak numpy):
  decode -> preprocess (batch, letterbox, normalise) -> infer -> post (decode, NMS, frame coords)
  -> blur (reference mask, OpenCV) -> sink (encode or keep in memory)
CUDA engine (torch on the GPU; frames cross the bus twice, everything else stays on the GPU):
  decode -> upload (pinned -> device, own stream) -> infer (letterbox + pool + model) -> post
  (torch decode/NMS) -> blur (torch masks + blend, in place) -> download (device -> pinned, own
  stream) -> sink
Each CUDA stage enqueues on its own stream and hands the next one an event, so copies overlap compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..ops import CUDA_BLUR_MODES, DEFAULT_CUDA_BLUR
from .core import wait_get

if TYPE_CHECKING:
    import torch

    from ...reference.detections import Detections
    from ...reference.preprocess import Letterbox
    from ...reference.torch_port import TorchDetections


@dataclass
class Batch:
    """One batch on its way through the stages; each stage fills what the next reads and drops the rest."""

    index: list[int]
    t0: list[float]
    frames: list[np.ndarray] | torch.Tensor | None  # host: HxWx3 uint8 arrays; CUDA: uint8 [B, H, W, 3]
    host: torch.Tensor | None = None  # CUDA: pinned host tensor holding the frames (input or output)
    release: Callable[[], None] | None = None  # gives a pinned staging buffer back to its pool
    x: np.ndarray | torch.Tensor | None = None  # the network input [B, 3, H, W]
    lb: list[Letterbox] | Letterbox | None = None  # host: one per frame; CUDA: one for the batch
    outputs: dict[str, np.ndarray] | dict[str, torch.Tensor] | None = None  # the model's outputs
    dets: list[Detections] | None = None  # reference Detections (frame pixels), for JSON and the proof
    tdets: TorchDetections | None = None  # CUDA: detections (frame pixels)
    event: torch.cuda.Event | _NoEvent | None = None  # when the last stage's work on this batch is done
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)


def frame_source(frames: Iterable[tuple[int, np.ndarray]]) -> Callable:
    """Stage 'decode': (index, frame) pairs from media.iter_frames or from host memory, time-stamped."""
    def fn(_):
        for idx, frame in frames:
            yield idx, frame, time.perf_counter()
    return fn


# ----------------------------------------------------------------------------- host engine

def host_preprocess(recipe, batch: int) -> Callable:
    from ...reference.preprocess import preprocess_batch

    def make(buf):
        x, lbs = preprocess_batch([f for _, f, _ in buf], recipe)
        return Batch([i for i, _, _ in buf], [t for _, _, t in buf], [f for _, f, _ in buf], x=x, lb=lbs)

    def fn(items):
        buf = []
        for it in items:
            buf.append(it)
            if len(buf) == batch:
                yield make(buf)
                buf = []
        if buf:
            yield make(buf)
    return fn


def host_batches(batch: int) -> Callable:
    """Stage 'batch' for the nvinfer emulation, which preprocesses frames itself (nvinfer's scaling)."""
    def fn(items):
        buf: list = []
        for it in items:
            buf.append(it)
            if len(buf) == batch:
                yield Batch([i for i, _, _ in buf], [t for _, _, t in buf], [f for _, f, _ in buf])
                buf = []
        if buf:
            yield Batch([i for i, _, _ in buf], [t for _, _, t in buf], [f for _, f, _ in buf])
    return fn


def nvinfer_infer(emulator) -> Callable:
    """Stage 'infer' for the nvinfer emulation: frames -> object metadata (frame pixels) -> Detections."""
    from ...nvinfer.emulation import to_detections

    def fn(batches):
        for b in batches:
            objs = emulator.infer(b.frames)
            b.dets = [to_detections(o, f.shape[1], f.shape[0]) for o, f in zip(objs, b.frames)]
            yield b
    return fn


def host_infer(runner, recipe) -> Callable:
    def fn(batches):
        for b in batches:
            b.outputs = runner.infer({recipe.input.name: b.x})
            b.x = None
            yield b
    return fn


def host_post(recipe) -> Callable:
    from ...reference.detections import postprocess, split_batch
    from ...reference.preprocess import to_frame

    def fn(batches):
        for b in batches:
            # raw heads or graph-decoded outputs: the reference post-processing reads both
            b.dets = [to_frame(postprocess(o, recipe), lb) for o, lb in zip(split_batch(b.outputs), b.lb)]
            b.outputs = None
            yield b
    return fn


def host_blur(recipe) -> Callable:
    from ..ops.cpu import blur_faces

    m = recipe.mask

    def fn(batches):
        for b in batches:
            for f, d in zip(b.frames, b.dets):
                blur_faces(f, d.boxes, d.landmarks, m.feather, m.max_tilt_deg, inplace=True)
            yield b
    return fn


# ----------------------------------------------------------------------------- CUDA engine

class _NoEvent:
    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass


class Streams:
    """CUDA streams/events where the tensors live on a GPU; no-ops on the CPU, so the tensor engine's
    stages run (and are tested) on a machine without a GPU."""

    def __init__(self, device):
        import torch

        self.cuda = torch.device(device).type == "cuda"

    def stream(self):
        import torch

        return torch.cuda.Stream() if self.cuda else None

    def use(self, stream):
        import contextlib

        import torch

        return torch.cuda.stream(stream) if self.cuda else contextlib.nullcontext()

    def event(self, stream):
        import torch

        if not self.cuda:
            return _NoEvent()
        ev = torch.cuda.Event()
        ev.record(stream)
        return ev

    def wait(self, stream, event, *tensors) -> None:
        if self.cuda:
            stream.wait_event(event)
            for t in tensors:
                t.record_stream(stream)  # the allocator must not reuse t's block before this stream is done

    def pin(self, t):
        return t.pin_memory() if self.cuda else t


class PinnedPool:
    """A few pinned host buffers [B, H, W, 3] reused in turn (cudaHostAlloc is slow: never per batch)."""

    def __init__(self, count: int, shape, stop, streams: Streams):
        import queue

        import torch

        self.free: queue.Queue = queue.Queue()
        self.stop = stop
        for _ in range(count):
            self.free.put(streams.pin(torch.empty(shape, dtype=torch.uint8)))

    def get(self):
        return wait_get(self.free, self.stop)

    def put(self, buf) -> None:
        self.free.put(buf)


def cuda_batches(batch: int, stop, streams: Streams, pool_size: int = 3) -> Callable:
    """Stage 'batch': decoded frames -> pinned staging buffers (for frames not already pinned)."""
    def fn(items):
        pool = None
        buf: list = []

        def make():
            nonlocal pool
            f0 = buf[0][1]
            if pool is None:
                pool = PinnedPool(pool_size, (batch, *f0.shape), stop, streams)
            host = pool.get()
            for j, (_, f, _) in enumerate(buf):
                host[j].numpy()[...] = f
            p = pool
            return Batch([i for i, _, _ in buf], [t for _, _, t in buf], None, host=host[: len(buf)],
                         release=lambda h=host: p.put(h))

        for it in items:
            buf.append(it)
            if len(buf) == batch:
                yield make()
                buf = []
        if buf:
            yield make()
    return fn


def pinned_batches(frames_pinned, batch: int, streams: Streams, count: int | None = None) -> Callable:
    """Stage 'decode' for frames already in pinned host memory ([N, H, W, 3]): views, no copy."""
    n = frames_pinned.shape[0]
    count = n if count is None else count

    def fn(_):
        for s in range(0, count, batch):
            idx = list(range(s, min(s + batch, count)))
            now = time.perf_counter()
            rows = [i % n for i in idx]
            if rows == list(range(rows[0], rows[0] + len(rows))):
                host = frames_pinned[rows[0]: rows[0] + len(rows)]
            else:  # wraps around the clip: rare, copy into a fresh pinned block
                host = streams.pin(frames_pinned[rows])
            yield Batch(idx, [now] * len(idx), None, host=host)
    return fn


def gpu_tokens(count: int, stop):
    """At most `count` batches of frames on the GPU at once (bounds GPU memory whatever the queues hold)."""
    import queue

    q: queue.Queue = queue.Queue()
    for i in range(count):
        q.put(i)
    return q


def cuda_upload(device, tokens, stop, streams: Streams) -> Callable:
    def fn(batches):
        stream = streams.stream()
        for b in batches:
            b.extra["token"] = wait_get(tokens, stop)
            with streams.use(stream):
                # A copy even on the CPU: the blur works in place and must not touch the source frames.
                b.frames = b.host.to(device, non_blocking=True, copy=True)
                b.event = streams.event(stream)
            if b.release is not None:
                b.event.synchronize()  # the staging buffer may be refilled only after the copy
                b.release()
            b.host = None
            yield b
    return fn


def cuda_infer(model, recipe, dtype, streams: Streams) -> Callable:
    import torch

    from ...reference.torch_port import letterbox_torch

    def fn(batches):
        stream = streams.stream()
        for b in batches:
            with streams.use(stream), torch.inference_mode():
                streams.wait(stream, b.event, b.frames)
                b.x, b.lb = letterbox_torch(b.frames, recipe, dtype=dtype)
                outs = model(b.x)
                b.outputs = {n: t.float() for n, t in zip(recipe.outputs.names, outs)}
                b.x = None
                b.event = streams.event(stream)
            yield b
    return fn


def cuda_post(recipe, anchors, streams: Streams) -> Callable:
    import torch

    from ...reference.torch_port import postprocess_torch, to_frame_torch

    def fn(batches):
        stream = streams.stream()
        for b in batches:
            with streams.use(stream), torch.inference_mode():
                streams.wait(stream, b.event, *b.outputs.values())
                b.tdets = to_frame_torch(postprocess_torch(b.outputs, recipe, anchors), b.lb)
                b.outputs = None
                b.dets = b.tdets.to_numpy()  # small; the JSON lines and the proof need them on the host
                b.event = streams.event(stream)
            yield b
    return fn


def cuda_blur_fn(mode: str = DEFAULT_CUDA_BLUR) -> Callable:
    """The torch blur: "dense" (ops.dense: a constant number of large kernels per batch) or "crops"
    (ops.torch: per-face crops, exact to ops.cpu, a few hundred small kernels per batch). The job's
    option picks one (`--cuda-blur`; the bench compares them); DEFAULT_CUDA_BLUR otherwise."""
    if mode == "crops":
        from ..ops.torch import blur_batch
        return blur_batch
    if mode == "dense":
        from ..ops.dense import blur_batch_dense
        return blur_batch_dense
    from ...errors import FbtoolError
    raise FbtoolError(f"unknown CUDA blur mode {mode!r}", f"choose one of {', '.join(CUDA_BLUR_MODES)}")


def cuda_blur(recipe, streams: Streams, mode: str = DEFAULT_CUDA_BLUR) -> Callable:
    import torch

    blur_batch = cuda_blur_fn(mode)
    m = recipe.mask

    def fn(batches):
        stream = streams.stream()
        for b in batches:
            with streams.use(stream), torch.inference_mode():
                streams.wait(stream, b.event, b.frames)
                blur_batch(b.frames, b.tdets, m.feather, m.max_tilt_deg)
                b.tdets = None
                b.event = streams.event(stream)
            yield b
    return fn


def cuda_download(stop, tokens, streams: Streams, pool_size: int = 4) -> Callable:
    def fn(batches):
        stream = streams.stream()
        pool = None
        for b in batches:
            if pool is None:
                pool = PinnedPool(pool_size, tuple(b.frames.shape), stop, streams)
            host = pool.get()
            with streams.use(stream):
                streams.wait(stream, b.event, b.frames)
                host[: len(b)].copy_(b.frames, non_blocking=True)
                b.event = streams.event(stream)
            b.frames = None  # record_stream keeps the block from reuse until the copy has run
            tokens.put(b.extra.pop("token"))
            b.host = host[: len(b)]
            b.release = lambda h=host, p=pool: p.put(h)
            yield b
    return fn


# ----------------------------------------------------------------------------- sinks

def sink(write: Callable[[np.ndarray], None] | None, results: list | None, latencies: list, progress=None,
         keep: list | None = None, open_writer=None) -> Callable:
    """Stage 'encode': frames to the writer (or dropped when write is None), in order.

    `open_writer` is a context manager factory (VideoWriter) entered inside this thread, so an error
    anywhere makes its __exit__ delete the temporary file.
    """
    import contextlib

    def fn(batches):
        cm = open_writer() if open_writer is not None else contextlib.nullcontext()
        with cm as writer:
            out = writer.write if writer is not None else write
            for b in batches:
                if b.event is not None:
                    b.event.synchronize()  # the download copy has landed in pinned memory
                frames: Iterator = iter(b.frames) if b.frames is not None else (f.numpy() for f in b.host)
                for j, f in enumerate(frames):
                    if out is not None:
                        out(f)
                    if keep is not None:
                        keep.append(np.array(f))
                    if results is not None:
                        results.append({"frame": b.index[j], "faces": b.dets[j].to_json()})
                    latencies.append(time.perf_counter() - b.t0[j])
                if b.release is not None:
                    b.release()
                if progress is not None:
                    progress(len(b))
                yield len(b)
    return fn
