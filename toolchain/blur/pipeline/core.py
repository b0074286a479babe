"""A small pipeline of concurrent stages joined by bounded queues (threads + queue.Queue).

Why threads: every heavy call in the blur job (PyAV decode/encode, OpenCV resize/blur, numpy,
onnxruntime, PyTorch kernels and CUDA copies) releases the GIL, so threads overlap the stages the way
DeepStream's GStreamer elements do, with no pickling and with CUDA tensors shared by reference.

Each stage is a generator transform `fn(items) -> items` run in its own thread: it may map one item
to one (infer), many to one (batching) or consume without yielding (the sink). Bounded queues give
back-pressure, so memory stays flat whatever the clip length.

Failure: the first exception in any stage is kept, a stop event is set, every other stage leaves at
its next queue operation (each waits with a short timeout and checks the event), and `run()` raises
that first exception in the caller's thread. Generators are closed on the way out, so a sink's
`with VideoWriter(...)` block sees the error and deletes its temporary file: no partial output.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_END = object()
_POLL_S = 0.05


class Stopped(Exception):
    """Raised inside a stage when another stage failed (or the caller interrupted): leave quietly."""


@dataclass
class StageStats:
    name: str
    items_in: int = 0
    items_out: int = 0
    wall_s: float = 0.0
    wait_in_s: float = 0.0  # starved: waiting for the previous stage
    wait_out_s: float = 0.0  # blocked: the next stage is slower (back-pressure)

    @property
    def busy_s(self) -> float:
        """Time spent doing this stage's own work: what bounds the pipeline if it is the largest."""
        return max(self.wall_s - self.wait_in_s - self.wait_out_s, 0.0)

    def to_dict(self) -> dict:
        return {"stage": self.name, "items_in": self.items_in, "items_out": self.items_out,
                "busy_s": round(self.busy_s, 4), "wait_in_s": round(self.wait_in_s, 4),
                "wait_out_s": round(self.wait_out_s, 4), "wall_s": round(self.wall_s, 4)}


@dataclass
class Stage:
    name: str
    fn: Callable[[Iterable[Any]], Iterable[Any]]  # the first stage's fn gets an empty iterable
    stats: StageStats = field(init=False)

    def __post_init__(self):
        self.stats = StageStats(self.name)


def _until_stopped(op, stop: threading.Event):
    """`op(timeout=...)` (a queue get or put) retried until it succeeds; Stopped once the pipeline stops.
    The short timeout is what lets a blocked stage notice the stop."""
    while True:
        if stop.is_set():
            raise Stopped()
        try:
            return op(timeout=_POLL_S)
        except (queue.Empty, queue.Full):
            continue


class _Feed:
    """Iterator over a stage's input queue that counts the time spent waiting."""

    def __init__(self, q: queue.Queue | None, stop: threading.Event, stats: StageStats):
        self.q, self.stop, self.stats = q, stop, stats

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self):
        if self.q is None:
            raise StopIteration
        t0 = time.perf_counter()
        try:
            item = _until_stopped(self.q.get, self.stop)
        finally:
            self.stats.wait_in_s += time.perf_counter() - t0
        if item is _END:
            self.q = None
            raise StopIteration
        self.stats.items_in += 1
        return item


_tls = threading.local()


def wait_get(q: queue.Queue, stop: threading.Event):
    """Blocking get that gives up when the pipeline stops (for resource pools shared by stages).

    The wait counts as the stage being blocked on its output (a pool refills only when a later stage
    gives a buffer back), not as its own work.
    """
    t0 = time.perf_counter()
    try:
        return _until_stopped(q.get, stop)
    finally:
        st = getattr(_tls, "stats", None)
        if st is not None:
            st.wait_out_s += time.perf_counter() - t0


class Pipeline:
    def __init__(self, stages: list[Stage], maxsize: int = 4, stop: threading.Event | None = None):
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = stages
        self.queues = [queue.Queue(maxsize=maxsize) for _ in stages[1:]]
        self.stop = stop or threading.Event()  # shared with resource pools that block (wait_get)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.wall_s = 0.0

    def _put(self, q: queue.Queue, item, stats: StageStats) -> None:
        t0 = time.perf_counter()
        try:
            _until_stopped(lambda timeout: q.put(item, timeout=timeout), self.stop)
        finally:
            stats.wait_out_s += time.perf_counter() - t0

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self.stop.set()

    def _run_stage(self, i: int) -> None:
        stage = self.stages[i]
        st = stage.stats
        q_in = self.queues[i - 1] if i > 0 else None
        q_out = self.queues[i] if i < len(self.queues) else None
        t0 = time.perf_counter()
        gen = None
        _tls.stats = st
        try:
            gen = iter(stage.fn(_Feed(q_in, self.stop, st)))
            for item in gen:
                st.items_out += 1
                if q_out is not None:
                    self._put(q_out, item, st)
            if q_out is not None:
                self._put(q_out, _END, st)
        except Stopped:
            pass
        except BaseException as exc:  # noqa: B036 - any failure must stop the whole pipeline
            self._fail(exc)
        finally:
            if gen is not None and hasattr(gen, "close"):
                try:
                    gen.close()  # runs the stage's finally/with blocks (closing files) in its own thread
                except BaseException as exc:  # noqa: B036
                    self._fail(exc)
            st.wall_s = time.perf_counter() - t0

    def run(self) -> list[StageStats]:
        """Run to completion; raise the first stage error after every thread has ended."""
        t0 = time.perf_counter()
        threads = [threading.Thread(target=self._run_stage, args=(i,), name=f"fbtool-{s.name}", daemon=True)
                   for i, s in enumerate(self.stages)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)
        except BaseException as exc:  # Ctrl-C in the caller: stop the stages, then re-raise
            self._fail(exc)
            for t in threads:
                t.join()
            raise
        self.wall_s = time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        return [s.stats for s in self.stages]
