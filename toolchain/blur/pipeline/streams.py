"""Many streams through one GPU, the way DeepStream's nvstreammux feeds nvinfer.

A few decoding threads (8; each serves several sources in turn: NVDEC through blur/nvdec.py on the
GPU, PyAV on the CPU for tests and machines without NVDEC) put NV12 frames in one shared bounded queue. The muxer fills a batch from
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
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .core import Stopped, wait_get

_EOS = object()
DECODE_THREADS = 8


class HostNv12Decoder:
    """PyAV decode on the CPU to NV12 tensors: the same interface as nvdec.NvDecoder."""

    def __init__(self, source: str, device: str = "cpu"):
        import av

        from ...media import resolve_media

        self.source = source if "://" in str(source) else str(resolve_media(source))
        self.device = device
        with av.open(self.source) as c:
            s = c.streams.video[0]
            self.width, self.height = s.codec_context.width, s.codec_context.height

    def frames(self, max_frames: int | None = None, sync: bool = False):
        import av
        import torch

        with av.open(self.source) as c:
            for n, f in enumerate(c.decode(video=0)):
                if max_frames is not None and n >= max_frames:
                    return
                yield n, torch.from_numpy(f.to_ndarray(format="nv12")).to(self.device), None


def open_decoder(source: str, nvdec: bool):
    if nvdec:
        from ..nvdec import NvDecoder

        return NvDecoder(source)
    return HostNv12Decoder(source)


@dataclass
class MuxStats:
    batches: int = 0
    frames: int = 0
    timeouts: int = 0  # batches sent before they were full
    per_stream: dict = field(default_factory=lambda: defaultdict(int))


class StreamMux:
    """Decoding threads -> one bounded queue -> batches of (stream, index, frame, t_decoded, ready event)."""

    def __init__(self, decoders: list, batch: int, timeout_s: float = 0.04, max_frames: int | None = None,
                 depth: int | None = None, stop: threading.Event | None = None, threads: int | None = None):
        self.decoders, self.batch, self.timeout_s, self.max_frames = decoders, batch, timeout_s, max_frames
        self.threads = threads  # decoding threads (default DECODE_THREADS; env FBTOOL_DECODE_THREADS)
        self.q: queue.Queue = queue.Queue(maxsize=depth or batch)
        self.stop = stop or threading.Event()
        self.error: BaseException | None = None
        self.stats = MuxStats()

    def _decode(self, group: list) -> None:
        """Decode the (stream id, decoder) pairs of `group` in turn, one frame each, from one thread."""
        try:
            gens = [(sid, dec.frames(self.max_frames)) for sid, dec in group]
            while gens:
                for g in list(gens):
                    try:
                        idx, frame, ev = next(g[1])
                    except StopIteration:
                        gens.remove(g)
                        continue
                    item = (g[0], idx, frame, time.perf_counter(), ev)
                    while True:
                        if self.stop.is_set():
                            return
                        try:
                            self.q.put(item, timeout=0.05)
                            break
                        except queue.Full:
                            continue
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
        import os

        n = len(self.decoders)
        # 8 threads, each decoding several streams in turn: on the H200 (32 / 64 streams, one session) 2577 /
        # 2482 frames/s against 2430 / 2451 with a thread per stream and 2496 / 1928 with 16 (docs/bench.md)
        k = max(1, min(n, self.threads or int(os.environ.get("FBTOOL_DECODE_THREADS", "0")) or DECODE_THREADS))
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
            for t in threads:
                t.join(timeout=5)
        if self.error is not None:
            raise self.error


class EncoderPool:
    """CPU encoders, one output per stream, `workers` threads (stream s is always encoded by worker
    s % workers, so its frames stay in order). PyAV's libx264 releases the GIL while it encodes."""

    def __init__(self, writers: list, workers: int):
        self.writers = writers
        self.qs = [queue.Queue(maxsize=64) for _ in range(max(1, workers))]
        self.error: BaseException | None = None
        self.threads = [threading.Thread(target=self._run, args=(q,), daemon=True) for q in self.qs]
        for t in self.threads:
            t.start()

    def _run(self, q: queue.Queue) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            sid, frame = item
            try:
                if self.error is None:
                    self.writers[sid].write(frame)
            except BaseException as exc:  # noqa: B036
                self.error = exc

    def put(self, sid: int, frame: np.ndarray) -> None:
        self.qs[sid % len(self.qs)].put((sid, frame))

    def close(self) -> None:
        for q in self.qs:
            q.put(None)
        for t in self.threads:
            t.join()
        if self.error is not None:
            raise self.error


def run_streams(runner, decoders: list, max_frames: int | None = None, timeout_s: float = 0.04,
                on_frame=None) -> dict:
    """Every decoder's frames through the runner (graphs.GraphRunner, fmt nv12), batched across streams.

    on_frame(stream, index, detections, frame_or_None) is called in order per stream; frame is the
    blurred BGR frame on the host when the runner downloads. Returns throughput and latency figures.
    """
    import os
    import sys

    import torch

    mux = StreamMux(decoders, runner.batch, timeout_s, max_frames)
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

    t_start = time.perf_counter()
    try:
        for buf in mux.batches():
            if not first:
                first.append(time.perf_counter())
            frames = [it[2] for it in buf]
            events = [it[4] for it in buf if it[4] is not None]

            def fill(dst, frames=frames, events=events):
                if dst.is_cuda:
                    cur = torch.cuda.current_stream()
                    for ev in events:  # each frame's clone has run on its decoder's stream
                        cur.wait_event(ev)
                torch.stack(frames, out=dst)
                if dst.is_cuda:
                    for f in frames:  # made on a decoder's stream, read on this one: keep the block alive
                        f.record_stream(cur)

            runner.submit(fill, len(buf), {"items": [(it[0], it[1], it[3]) for it in buf]}, finish)
            del frames, events, buf
        runner.drain(finish)
    finally:
        sys.setswitchinterval(old_switch)
    wall = time.perf_counter() - t_start
    steady = time.perf_counter() - first[0] if first else wall
    lat = np.asarray(latencies or [0.0]) * 1000
    n = len(latencies)
    return {"frames": n, "wall_s": wall, "fps": n / wall if wall > 0 else 0.0,
            "fps_after_first_frame": n / steady if steady > 0 else 0.0,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "batches": mux.stats.batches, "batch_fill": n / max(mux.stats.batches, 1) / runner.batch,
            "partial_batches": mux.stats.timeouts, "frames_per_stream": dict(mux.stats.per_stream),
            "inexact_frames": runner.inexact}
