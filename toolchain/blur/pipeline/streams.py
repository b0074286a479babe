"""Many streams through one GPU, the way DeepStream's nvstreammux feeds nvinfer.

A few decoding threads (8, each serving several sources in turn; one per source with fbtool's own NVDEC
decoder, blur/fbnvdec.py, which holds no GIL while it decodes. NVDEC through blur/fbnvdec.py or nvdec.py on the
GPU, PyAV on the CPU for tests and machines without NVDEC) copy each decoded NV12 frame into a slot of
one preallocated frame pool (FramePool: the muxer's batch buffer, like nvstreammux's surface pool; a
fixed amount of device memory whatever the number of streams) and put it in one shared bounded queue. The muxer fills a batch from
whichever streams have frames: it waits for a first frame, then takes frames until the batch is full
or `timeout_s` has passed since that first frame (nvstreammux's batched-push-timeout), and hands the
batch to the graphed stage (graphs.GraphRunner, format nv12). Results come back per stream: the
detections (JSON lines), and with downloads the blurred frames, which an encoder pool writes, one
output per input.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

from .core import Stopped, wait_get

_EOS = object()
DECODE_THREADS = 8
# fbtool's decoder (blur/fbnvdec.py) holds no GIL while it decodes, so one thread per stream pays: on the H200,
# 32 streams, one session: 8 threads 2238 frames/s, 16 2535, 32 2914 (docs/bench.md, issue 18c)
DECODE_THREADS_FBTOOL = 32


class FramePool:
    """`n` frames preallocated on one device, written by the decoding threads (each copies its decoder's
    surface into a free slot, on the decoder's stream) and read by the batch upload. A slot is free again
    once the upload that read it has completed (its event). Before this pool each surface was cloned into
    a tensor of its own on its decoder's stream, and PyTorch's caching allocator keeps freed blocks per
    stream: 32 decoder streams kept 32 sets of frame blocks (docs/bench.md, issue 18)."""

    def __init__(self, n: int, shape: tuple, device, stop: threading.Event | None = None):
        import torch

        self._torch = torch
        self.buf = torch.empty((n, *shape), dtype=torch.uint8, device=device)
        self.views = list(self.buf.unbind(0))
        self.frame_bytes = self.views[0].numel()
        self.free: queue.Queue = queue.Queue()
        for i in range(n):
            self.free.put(i)
        self.pending: deque = deque()  # (event, slots) of uploads not known to be done
        self.lock = threading.Lock()
        self.stop = stop or threading.Event()

    def acquire(self) -> int:
        while True:
            try:
                return self.free.get_nowait()
            except queue.Empty:
                pass
            self.reap()  # uploads finish within ~0.1 ms of being queued: look again soon, not in 2 ms
            try:
                return self.free.get(timeout=0.0005)
            except queue.Empty:
                if self.stop.is_set():
                    raise Stopped from None

    def write(self, frame, stream=None):
        """Copy `frame` into a free slot, on the current CUDA stream (the decoder's: `stream`, None on the
        CPU); returns (the slot's frame, an event marking the copy's end, or None)."""
        dst = self.views[self.acquire()]
        dst.copy_(frame, non_blocking=stream is not None)
        ev = None
        if stream is not None:
            ev = self._torch.cuda.Event()
            ev.record(stream)
        return dst, ev

    def slot(self, frame) -> int:
        return (frame.data_ptr() - self.buf.data_ptr()) // self.frame_bytes

    def release_on(self, stream, slots) -> None:
        """Free `slots` once the work queued so far on `stream` (None: now, on the CPU) has run."""
        ev = None
        if stream is not None:
            ev = self._torch.cuda.Event()
            ev.record(stream)
        self.release_after(ev, slots)

    def halt(self) -> None:
        """Nothing to wake: acquire() polls `stop` (fbnvdec.NativeFramePool's waiters are in C++)."""

    def release_after(self, event, slots) -> None:
        """Free `slots` once `event` (None: now) has completed."""
        if event is None:
            for s in slots:
                self.free.put(s)
            return
        with self.lock:
            self.pending.append((event, list(slots)))
        self.reap()

    def reap(self) -> None:
        with self.lock:
            while self.pending and self.pending[0][0].query():
                for s in self.pending.popleft()[1]:
                    self.free.put(s)


class HostNv12Decoder:
    """PyAV decode on the CPU to NV12 tensors: the same interface as nvdec.NvDecoder."""

    def __init__(self, source: str, device: str = "cpu"):
        import av

        from ...errors import FbtoolError
        from ...media import resolve_media

        self.source = source if "://" in str(source) else str(resolve_media(source))
        self.device = device
        try:
            with av.open(self.source) as c:
                s = c.streams.video[0]
                self.width, self.height = s.codec_context.width, s.codec_context.height
        except (av.FFmpegError, IndexError) as exc:
            raise FbtoolError(f"cannot decode {self.source}: {exc if str(exc) else 'no video stream'}",
                              "check that it is a video that plays (or the URI is reachable)") from exc

    def frames(self, max_frames: int | None = None, sync: bool = False, clone: bool = True, into=None):
        import av
        import torch

        with av.open(self.source) as c:
            for n, f in enumerate(c.decode(video=0)):
                if max_frames is not None and n >= max_frames:
                    return
                t = torch.from_numpy(f.to_ndarray(format="nv12"))
                yield (n, *into.write(t)) if into is not None else (n, t.to(self.device), None)


# Which NVDEC implementation `nvdec=True` means (--decoder nvdec / auto): "fbtool" (plugins/nvdec via
# blur/fbnvdec.py: few decode surfaces, no GIL per frame) or "pynvvideocodec" (blur/nvdec.py).
NVDEC_DEFAULT = "fbtool"
NVDEC_KINDS = ("fbtool", "pynvvideocodec")
DECODER_CHOICES = ("auto", "nvdec", *NVDEC_KINDS, "cpu")  # --decoder of `fbtool blur` and `fbtool bench`


def nvdec_kind(nvdec) -> str | None:
    """None (PyAV on the CPU), or the NVDEC implementation: nvdec is a bool or one of NVDEC_KINDS."""
    if not nvdec or nvdec == "cpu":
        return None
    return NVDEC_DEFAULT if nvdec is True or nvdec == "nvdec" else str(nvdec)


def resolve_decoder(choice: str, cuda: bool) -> str | None:
    """--decoder's value -> None (PyAV on the CPU) or an NVDEC kind. auto: NVDEC where a GPU and
    PyNvVideoCodec (its demuxer serves both kinds) are; auto and nvdec take NVDEC_DEFAULT, or
    PyNvVideoCodec's decoder where fbtool's cannot be built or loaded here (no g++ or nv-codec-headers)."""
    if choice == "cpu" or (choice == "auto" and not cuda):
        return None
    if choice == "auto":
        from ..nvdec import available

        if not available()[0]:
            return None
    if choice in ("auto", "nvdec"):
        if NVDEC_DEFAULT == "fbtool":
            from ..fbnvdec import available as fbtool_available

            return "fbtool" if fbtool_available()[0] else "pynvvideocodec"
        return NVDEC_DEFAULT
    return choice


def open_decoder(source: str, nvdec):
    kind = nvdec_kind(nvdec)
    if kind == "fbtool":
        from ..fbnvdec import FbNvDecoder

        return FbNvDecoder(source)
    if kind == "pynvvideocodec":
        from ..nvdec import NvDecoder

        return NvDecoder(source)
    if kind is not None:
        from ...errors import FbtoolError

        raise FbtoolError(f"unknown NVDEC decoder {kind!r}", f"one of {', '.join(NVDEC_KINDS)}")
    return HostNv12Decoder(source)


def make_pool(decoders: list, n: int, device, stop: threading.Event | None = None):
    """The frame pool for these decoders: their own kind's (fbnvdec: the free list lives in C++, where
    the decoding calls take slots without the GIL), else FramePool."""
    h, w = decoders[0].height, decoders[0].width
    factory = getattr(decoders[0], "make_pool", None)
    if factory is not None:
        return factory(n, (h * 3 // 2, w), device, stop)
    return FramePool(n, (h * 3 // 2, w), device, stop)


@dataclass
class MuxStats:
    batches: int = 0
    frames: int = 0
    timeouts: int = 0  # batches sent before they were full
    per_stream: dict = field(default_factory=lambda: defaultdict(int))


class StreamMux:
    """Decoding threads -> one bounded queue -> batches of (stream, index, frame, t_decoded, ready event,
    pool slot). With `pool` (a FramePool) each frame is a view of its pool slot (release it with
    pool.release_after once read); without, a tensor of its own (slot None)."""

    def __init__(self, decoders: list, batch: int, timeout_s: float = 0.04, max_frames: int | None = None,
                 depth: int | None = None, stop: threading.Event | None = None, threads: int | None = None,
                 pool: FramePool | None = None, lean_pool: bool = False):
        self.decoders, self.batch, self.timeout_s, self.max_frames = decoders, batch, timeout_s, max_frames
        self.threads = threads  # decoding threads (default DECODE_THREADS; env FBTOOL_DECODE_THREADS)
        self.lean_pool = lean_pool  # pool_size(): two batches in flight instead of three (memory.MemoryPlan)
        self.q: queue.Queue = queue.Queue(maxsize=depth or batch)
        self.stop = stop or threading.Event()
        self.pool = pool
        if pool is not None:
            pool.stop = self.stop
        self.error: BaseException | None = None
        self.stats = MuxStats()

    def pool_size(self) -> int:
        """Frames a FramePool needs so that the decoders never wait for each other: the queue, the batch
        being filled, one per decoding thread, and one batch whose upload has not completed yet. fbtool's
        decoder (fbnvdec) writes a whole end-of-stream flush (a few frames) within one call: 3 per thread.
        lean_pool: no batch kept for uploads in flight (an upload gives its slots back once it has run, so
        the decoders wait for it instead): two batches."""
        per_thread = 3 if self.decoders and getattr(self.decoders[0], "kind", "") == "fbtool" else 1
        return (2 if self.lean_pool else 3) * self.batch + per_thread * self._thread_count()

    def _thread_count(self) -> int:
        import os

        n = len(self.decoders)
        # PyNvVideoCodec / PyAV: 8 threads, each decoding several streams in turn: on the H200 (32 / 64 streams,
        # one session) 2577 / 2482 frames/s against 2430 / 2451 with a thread per stream and 2496 / 1928 with 16
        # (docs/bench.md); fbtool's decoder: a thread per stream up to DECODE_THREADS_FBTOOL
        fbtool = bool(self.decoders) and getattr(self.decoders[0], "kind", "") == "fbtool"
        default = DECODE_THREADS_FBTOOL if fbtool else DECODE_THREADS
        return max(1, min(n, self.threads or int(os.environ.get("FBTOOL_DECODE_THREADS", "0")) or default))

    def _next(self, sid: int, dec, gen):
        """The next frame of one decoder as a queue item (StopIteration at its end)."""
        idx, frame, ev = next(gen)
        return (sid, idx, frame, time.perf_counter(), ev, None if self.pool is None else self.pool.slot(frame))

    def _decode(self, group: list) -> None:
        """Decode the (stream id, decoder) pairs of `group` in turn, one frame each, from one thread."""
        try:
            kw = {} if self.pool is None else {"into": self.pool}  # decoders copy into the pool themselves
            gens = [(sid, dec, dec.frames(self.max_frames, **kw)) for sid, dec in group]
            while gens:
                for g in list(gens):
                    try:
                        item = self._next(*g)
                    except StopIteration:
                        gens.remove(g)
                        continue
                    while True:
                        if self.stop.is_set():
                            return
                        try:
                            self.q.put(item, timeout=0.05)
                            break
                        except queue.Full:
                            continue
        except Stopped:  # the pool was waited on after the muxer stopped
            pass
        except BaseException as exc:  # noqa: B036 - reported by the muxer, in the caller's thread
            self.error = self.error or exc
            self.stop.set()
        finally:
            while True:  # the end marker; a stopped muxer no longer reads, so do not block on it
                try:
                    self.q.put(_EOS, timeout=0.05)
                    break
                except queue.Full:
                    if self.stop.is_set():
                        break

    def batches(self):
        k = self._thread_count()
        pairs = list(enumerate(self.decoders))
        threads = [threading.Thread(target=self._decode, args=(pairs[i::k],), daemon=True, name=f"fbtool-dec{i}")
                   for i in range(k)]
        for t in threads:
            t.start()
        live = len(threads)
        try:
            while live:
                buf: list = []
                deadline = None
                while len(buf) < self.batch and live:
                    try:
                        if deadline is None:
                            item = wait_get(self.q, self.stop)
                        else:
                            item = self.q.get(timeout=max(deadline - time.perf_counter(), 0.0))
                    except queue.Empty:
                        self.stats.timeouts += 1
                        break
                    if item is _EOS:
                        live -= 1
                        continue
                    buf.append(item)
                    if deadline is None:
                        deadline = time.perf_counter() + self.timeout_s
                if buf:
                    self.stats.batches += 1
                    self.stats.frames += len(buf)
                    for item in buf:
                        self.stats.per_stream[item[0]] += 1
                    yield buf
        except Stopped:
            pass
        finally:
            self.stop.set()
            if self.pool is not None:
                self.pool.halt()  # frames waiting for a slot inside fbtool's decoder calls give up
            for t in threads:
                t.join(timeout=5)
        if self.error is not None:
            raise self.error


class EncoderPool:
    """CPU encoders, one output per stream, `workers` threads (stream s is always encoded by worker
    s % workers, so its frames stay in order). PyAV's libx264 releases the GIL while it encodes."""

    def __init__(self, writers: list, workers: int):
        self.writers = writers
        self.workers = max(1, min(workers, len(writers)))  # more threads than outputs would idle
        self.qs = [queue.Queue(maxsize=64) for _ in range(self.workers)]
        self.error: BaseException | None = None
        self.busy = [0.0] * self.workers  # seconds each worker spent in write()
        self.put_wait_s = 0.0  # the producer's time blocked on a full queue: the encoders were behind
        self.frames = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.workers)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        q = self.qs[i]
        while True:
            item = q.get()
            if item is None:
                return
            sid, frame = item
            try:
                if self.error is None:
                    t0 = time.perf_counter()
                    self.writers[sid].write(frame)
                    self.busy[i] += time.perf_counter() - t0
            except BaseException as exc:  # noqa: B036
                self.error = exc

    def put(self, sid: int, frame: np.ndarray) -> None:
        q = self.qs[sid % len(self.qs)]
        self.frames += 1
        try:
            q.put_nowait((sid, frame))
        except queue.Full:
            t0 = time.perf_counter()
            q.put((sid, frame))
            self.put_wait_s += time.perf_counter() - t0

    def stats(self, wall_s: float) -> dict:
        return {"workers": self.workers, "frames": self.frames, "put_wait_s": self.put_wait_s,
                "busy_s_mean": float(np.mean(self.busy)), "busy_s_max": float(max(self.busy)),
                "busy_fraction_mean": float(np.mean(self.busy)) / wall_s if wall_s > 0 else None}

    def close(self) -> None:
        for q in self.qs:
            q.put(None)
        for t in self.threads:
            t.join()
        if self.error is not None:
            raise self.error


def run_streams(runner, decoders: list, max_frames: int | None = None, timeout_s: float = 0.04,
                on_frame=None, frame_pool: bool = True, plan=None) -> dict:
    """Every decoder's frames through the runner (graphs.GraphRunner, fmt nv12), batched across streams.

    on_frame(stream, index, detections, frame_or_None) is called in order per stream; frame is the
    blurred BGR frame on the host when the runner downloads. frame_pool=False: each decoded frame is a
    tensor of its own (the first version; kept to measure against). plan (memory.MemoryPlan): its pool
    policy and decoding threads. Returns throughput and latency figures.
    """
    import os
    import sys

    import torch

    mux = StreamMux(decoders, runner.batch, timeout_s, max_frames, threads=plan.decode_threads if plan else None,
                    lean_pool=bool(plan) and plan.pool == "lean")
    pool = None
    if not frame_pool and decoders and getattr(decoders[0], "kind", "") == "fbtool":
        from ...errors import FbtoolError

        raise FbtoolError("a tensor per frame (no frame pool) is PyNvVideoCodec's way only",
                          "use --decoder pynvvideocodec with --no-frame-pool")
    if frame_pool and decoders:
        pool = make_pool(decoders, mux.pool_size(), "cuda" if runner.cuda else "cpu", mux.stop)
        mux.pool = pool
    # Tens of decoding threads and the muxer share the GIL: a short switch interval lets the thread
    # that feeds the GPU get it back quickly (H200, 32 streams: 5 ms default 2121 frames/s, 0.5 ms 2556).
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(float(os.environ.get("FBTOOL_GIL_SWITCH_S", "0.0005")))
    latencies: list[float] = []
    first: list[float] = []

    def finish(slot):
        dets = runner.detections(slot)
        now = time.perf_counter()
        for j, (sid, idx, t0) in enumerate(slot.meta["items"]):
            if on_frame is not None:
                f = None if slot.host_frames is None else slot.host_frames[j].numpy()
                on_frame(sid, idx, dets[j], f)
            latencies.append(now - t0)

    t_start, cpu_start = time.perf_counter(), time.thread_time()
    try:
        for buf in mux.batches():
            if not first:
                first.append(time.perf_counter())
            frames = [it[2] for it in buf]
            events = [it[4] for it in buf if it[4] is not None]
            slots = [it[5] for it in buf]

            def fill(dst, frames=frames, events=events, slots=slots):
                cur = torch.cuda.current_stream() if dst.is_cuda else None
                for ev in events:  # each frame's copy has run on its decoder's stream
                    cur.wait_event(ev)
                torch.stack(frames, out=dst)
                if pool is not None:  # the slots are free once this upload has run
                    pool.release_on(cur, slots)
                elif cur is not None:
                    for f in frames:  # made on a decoder's stream, read on this one: keep the block alive
                        f.record_stream(cur)

            runner.submit(fill, len(buf), {"items": [(it[0], it[1], it[3]) for it in buf]}, finish)
            if pool is not None:
                pool.reap()
            del frames, events, slots, buf
        runner.drain(finish)
    finally:
        sys.setswitchinterval(old_switch)
    wall = time.perf_counter() - t_start
    # this (the feeding) thread's own CPU time: near wall_s, it was the limit; far under, it waited (GIL, GPU)
    feeder_cpu = time.thread_time() - cpu_start
    steady = time.perf_counter() - first[0] if first else wall
    lat = np.asarray(latencies or [0.0]) * 1000
    n = len(latencies)
    return {"frames": n, "wall_s": wall, "fps": n / wall if wall > 0 else 0.0,
            "fps_after_first_frame": n / steady if steady > 0 else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "batches": mux.stats.batches, "batch_fill": n / max(mux.stats.batches, 1) / runner.batch,
            "partial_batches": mux.stats.timeouts, "frames_per_stream": dict(mux.stats.per_stream),
            "inexact_frames": runner.inexact, "feeder_thread_cpu_s": feeder_cpu,
            "decode_threads": mux._thread_count(), "pool_frames": None if pool is None else int(pool.buf.shape[0])}
