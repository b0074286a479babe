"""How much device memory the NVDEC + CUDA-graph path may use, beside what NVDEC itself needs.

Issue 18's target is the whole process (NVML, CUDA context included) under 2 GB at 32 streams. The CUDA
context (~610 MiB) and 32 NVDEC decoders at NVIDIA's minimum surface count (29.3 MiB each, plugins/nvdec)
are ~1548 MiB before a frame of ours (docs/bench.md). What is ours, and what each knob here trades
(measured on the H200, docs/bench.md "memory-lean"):

- graph_slots: captured stages driven round-robin (graphs.GraphRunner); each holds a static NV12 input
  (and a static BGR frame buffer when frames are downloaded). 2 overlap a batch's upload with the
  previous batch's replay.
- frame_chunk: frames at once through the stage's full-size temporaries, in the graphs' private memory:
  the letterbox's float16 copy (reference.torch_port.letterbox_torch) and the blur's int16 copy before
  pooling (ops.dense._pool_base), 12 MB a 1080p frame each. Per-frame ops and exact integer sums: the
  same result for any chunk.
- keep_frames: a static BGR frame buffer per slot even when nothing downloads the blurred frames (False:
  the frames are an intermediate of the graph, shared by every slot's graph through their common pool).
- pool: the muxer's frame pool (streams.StreamMux.pool_size): "default" keeps three batches in flight,
  "lean" two (the queue and the batch being filled; an upload gives its slots back as soon as it has run).
- decode_threads: decoding threads (streams.StreamMux); each can hold a few pool slots (an end-of-stream
  flush writes its frames in one call), so fewer threads also mean a smaller pool.
- expandable_segments: PyTorch's allocator maps memory in small steps instead of whole segments.
- cudnn: False runs the convolutions on PyTorch's own kernels (only measured, not a preset).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class MemoryPlan:
    graph_slots: int = 2
    frame_chunk: int = 8
    keep_frames: bool = True
    pool: str = "default"
    decode_threads: int | None = None  # None: streams.py's default for the decoder kind
    expandable_segments: bool = False
    cudnn: bool = True
    batch: int | None = None  # the batch the plan was measured at (None: the caller's)
    name: str = "default"

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **kw) -> MemoryPlan:
        return replace(self, **kw)


DEFAULT = MemoryPlan()
# --memory-lean: the knobs that kept every detection identical and the frame rate useful (H200, 32 streams
# of 1080p, docs/bench.md "memory-lean"): 2052-2101 MiB for the whole process at 2111 frames/s, against 3084
# MiB at 2705 with the defaults; 16 decoding threads took less memory than 8 and ran faster (measured twice)
LEAN = MemoryPlan(graph_slots=2, frame_chunk=2, keep_frames=False, pool="lean", decode_threads=16,
                  expandable_segments=True, batch=8, name="lean")


def check(plan: MemoryPlan) -> MemoryPlan:
    from ...errors import FbtoolError

    if plan.graph_slots < 1 or plan.frame_chunk < 1:
        raise FbtoolError(f"memory plan {plan.name}: graph_slots and frame_chunk must be at least 1", "a bug")
    if plan.pool not in ("default", "lean"):
        raise FbtoolError(f"memory plan {plan.name}: unknown pool policy {plan.pool!r}", "default or lean")
    if plan.decode_threads is not None and plan.decode_threads < 1:
        raise FbtoolError(f"memory plan {plan.name}: decode_threads must be at least 1", "a bug")
    return plan


def apply_process_settings(plan: MemoryPlan) -> None:
    """What must be set before this process first touches CUDA: the allocator's expandable segments
    (PYTORCH_CUDA_ALLOC_CONF, read when the allocator starts), and cuDNN off when the plan says so. A
    PYTORCH_CUDA_ALLOC_CONF the user set is kept; expandable_segments is added to it when missing."""
    if plan.expandable_segments:
        conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
        if "expandable_segments" not in conf:
            os.environ["PYTORCH_CUDA_ALLOC_CONF"] = ",".join(x for x in (conf, "expandable_segments:True") if x)
    if not plan.cudnn:
        import torch

        torch.backends.cudnn.enabled = False
