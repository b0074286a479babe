"""Activation statistics per tensor, from onnxruntime over a calibration set.

One statistics pass serves every INT8 product: the legacy TensorRT cache (scale = amax / 127 per
tensor), the scales of the Model Optimizer Q/DQ model (injected from that cache, so both carry the
same numbers), the FP16 overflow check, and the engine stage's own TensorRT calibrator.

Tensors are named as TensorRT's ONNX parser names them: the graph input and every float node
output (the ONNX tensor names). Two passes over the data: the first finds each tensor's absolute
max, the second fills a histogram of |x| over [0, amax] (2048 bins, as TensorRT's entropy
calibration uses), from which `entropy_amax` picks the threshold that minimises the KL divergence
between the fp32 distribution and its 128-level quantisation (NVIDIA's published entropy
calibration algorithm, "8-bit Inference with TensorRT", GTC 2017).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FbtoolError, require
from ..fsutil import atomic_path

NUM_BINS = 2048
QUANT_LEVELS = 128  # |x| maps onto 0..127 in symmetric INT8
METHODS = ("entropy", "max")
FP16_MAX = 65504.0


@dataclass
class ActivationStats:
    names: list[str]  # graph input first, then node outputs in graph order
    amax: dict[str, float]
    hist: dict[str, np.ndarray] = field(default_factory=dict)  # |x| counts, NUM_BINS bins over [0, amax]
    producers: dict[str, str] = field(default_factory=dict)  # tensor -> producing node name ("" for inputs)
    outputs: list[str] = field(default_factory=list)  # graph output names
    frames: int = 0

    def thresholds(self, method: str, stride: int = 2) -> dict[str, float]:
        """Per-tensor clipping threshold (amax used for the INT8 scale) for `method`."""
        if method == "max":
            return {n: self.amax[n] for n in self.names}
        if method == "entropy":
            return {n: entropy_amax(self.hist[n], self.amax[n], stride=stride) if n in self.hist else self.amax[n]
                    for n in self.names}
        raise FbtoolError(f"unknown calibration method {method!r}", f"choose one of {', '.join(METHODS)}")

    def scales(self, method: str) -> dict[str, float]:
        """INT8 scale per tensor: threshold / 127, as float32 values (what the cache stores).

        A tensor that is zero on every frame gets the smallest normal scale: any scale represents 0
        exactly, and TensorRT needs a positive one for every tensor of an INT8 network.
        """
        tiny = float(np.finfo(np.float32).tiny)
        return {n: max(float(np.float32(t / 127.0)), tiny) for n, t in self.thresholds(method).items()}

    def save(self, path: str | os.PathLike) -> Path:
        arrays: dict = {"names": np.array(self.names), "amax": np.array([self.amax[n] for n in self.names], np.float64),
                  "hist": np.stack([self.hist.get(n, np.zeros(NUM_BINS)) for n in self.names]).astype(np.int64),
                  "producers": np.array([self.producers.get(n, "") for n in self.names]),
                  "outputs": np.array(self.outputs), "frames": np.array(self.frames)}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActivationStats:
        with np.load(path) as z:
            names = [str(n) for n in z["names"]]
            return cls(names, dict(zip(names, map(float, z["amax"]))), dict(zip(names, z["hist"])),
                       dict(zip(names, map(str, z["producers"]))), [str(o) for o in z["outputs"]], int(z["frames"]))


def tensor_names(model) -> tuple[list[str], dict[str, str]]:
    """Float tensors TensorRT names in a network parsed from this ONNX: inputs, then node outputs."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    inits = {i.name for i in model.graph.initializer}
    names, producers = [], {}
    for i in model.graph.input:
        if i.name not in inits and types.get(i.name) in floats:
            names.append(i.name)
            producers[i.name] = ""
    for node in model.graph.node:
        if node.op_type == "Constant":  # weights, not activations
            continue
        for o in node.output:
            if o and types.get(o) in floats:
                names.append(o)
                producers[o] = node.name
    return names, producers


def _session(model, names: list[str], threads: int | None):
    """An onnxruntime session whose outputs are every tensor in `names`."""
    import onnx

    ort = require("onnxruntime", "calibration statistics")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have and n not in {i.name for i in m.graph.input}:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # Basic level only folds constants; the fusions of higher levels would hide observed tensors.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def collect(onnx_path: str | os.PathLike, batches: Iterable[np.ndarray], threads: int | None = None,
            num_bins: int = NUM_BINS) -> ActivationStats:
    """Activation amax and |x| histogram for every tensor. `batches` is iterated twice."""
    import onnx

    model = onnx.load(str(onnx_path))
    names, producers = tensor_names(model)
    sess = _session(model, names, threads)
    input_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]

    def run(x):
        vals = dict(zip(out_names, sess.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})))
        vals[input_name] = x
        return vals

    amax = {n: 0.0 for n in names}
    frames = 0
    for x in batches:
        frames += x.shape[0]
        vals = run(x)
        for n in names:
            if n in vals and vals[n].size:
                v = np.abs(vals[n])
                if not np.isfinite(v).all():
                    raise FbtoolError(f"tensor {n!r} holds inf/nan on the calibration frames",
                                      "check the model and the preprocessing")
                amax[n] = max(amax[n], float(v.max()))
    if frames == 0:
        raise FbtoolError("the calibration set holds no frame", "give calibration sources with readable frames")
    hist = {n: np.zeros(num_bins, np.int64) for n in names}
    for x in batches:
        vals = run(x)
        for n in names:
            if n in vals and amax[n] > 0:
                hist[n] += _abs_histogram(vals[n], amax[n], num_bins)
    stats = ActivationStats(names, amax, hist, producers, [o.name for o in model.graph.output], frames)
    check_outputs_live({o: amax.get(o, 0.0) for o in stats.outputs}, "the calibration statistics")
    return stats


def _abs_histogram(x: np.ndarray, amax: float, num_bins: int) -> np.ndarray:
    """Counts of |x| in num_bins equal bins over [0, amax] (bincount: 2x faster than np.histogram)."""
    idx = (np.abs(x, dtype=np.float32).ravel() * np.float32(num_bins / amax)).astype(np.int32)
    np.minimum(idx, num_bins - 1, out=idx)
    return np.bincount(idx, minlength=num_bins)[:num_bins]


def check_outputs_live(amax_by_output: dict[str, float], what: str) -> None:
    """An output that is zero on every calibration frame means a broken calibration: stop."""
    dead = [n for n, a in amax_by_output.items() if not a > 0]
    if dead:
        raise FbtoolError(f"{what} leave output {dead[0]!r} all-zero on every calibration frame",
                          "check the calibration frames (black/empty?) and the preprocessing")


def entropy_amax(hist: np.ndarray, amax: float, stride: int = 2, start_bin: int = QUANT_LEVELS,
                 levels: int = QUANT_LEVELS) -> float:
    """Threshold minimising KL(P || Q) between the |x| histogram clipped at bin i and its `levels`-level copy."""
    bins = np.asarray(hist, dtype=np.float64).copy()
    n = bins.size
    if amax <= 0 or bins.sum() == 0 or n <= start_bin:
        return float(amax)
    # The zero bin of a post-ReLU tensor holds a spike that would dominate the divergence; like NVIDIA's
    # reference calibrator, give it its neighbour's count.
    bins[0] = bins[1]
    tail = np.concatenate([np.cumsum(bins[::-1])[::-1], [0.0]])  # tail[i] = sum(bins[i:])
    best_i, best_kl = n, np.inf
    for i in range(start_bin, n + 1, stride):
        p = bins[:i].copy()
        p[i - 1] += tail[i]  # outliers clip to the last kept bin
        nz = p > 0
        starts = (np.arange(levels) * i) // levels
        q_sum = np.add.reduceat(bins[:i], starts)
        q_cnt = np.add.reduceat(nz.astype(np.float64), starts)
        per = np.divide(q_sum, q_cnt, out=np.zeros_like(q_sum), where=q_cnt > 0)
        q = np.repeat(per, np.diff(np.append(starts, i))) * nz
        ps, qs = p.sum(), q.sum()
        if qs <= 0:
            continue
        pm, qm = p[nz] / ps, q[nz] / qs
        if (qm <= 0).any():
            continue
        kl = float(np.sum(pm * np.log(pm / qm)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(best_i * amax / n)
