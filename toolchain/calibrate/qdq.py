"""INT8 explicit quantization: a Q/DQ ONNX made by NVIDIA Model Optimizer's ONNX PTQ.

TensorRT 11 builds INT8 only from QuantizeLinear/DequantizeLinear pairs in the graph, and TensorRT 10
with `strongly-typed=1` (DeepStream 9.x) does too; Model Optimizer is NVIDIA's producer for them. It
runs on the CPU here (`calibration_eps=["cpu"]`), keeps everything it does not quantize in fp32
(`high_precision_dtype="fp32"`), and takes its activation scales from our calibration cache
(`calibration_cache_path`), so the Q/DQ model and the legacy cache carry the same numbers from one
statistics pass. Model Optimizer still runs its own onnxruntime calibration first (its API requires
data); the cache then overrides every activation scale it covers.

Kept in high precision: the post-processing tail (every node after the last Conv/Gemm/MatMul on all
paths: reshapes, softmax, and in a decoded graph the exp/mul/add of the box decode, where a
quantised anchor multiply would move boxes by whole pixels), and any Softmax/Exp/Log/Sigmoid.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import FbtoolError, require
from ..fsutil import atomic_path

WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
ARITHMETIC_OPS = WEIGHTED_OPS | {"Add", "Sub", "Mul", "Div", "Resize", "MaxPool", "AveragePool",
                                 "GlobalAveragePool", "Softmax", "Exp", "Log", "Sigmoid", "Pow", "Sqrt"}
SENSITIVE_OPS = {"Softmax", "Exp", "Log", "Sigmoid", "Pow", "Sqrt", "Div", "TopK", "NonMaxSuppression"}


@contextlib.contextmanager
def quiet(log: io.StringIO | None = None):
    """Silence Model Optimizer / onnxruntime chatter (progress bars, INFO logs) while they run."""
    sink = log if log is not None else io.StringIO()
    logger = logging.getLogger("modelopt")
    saved = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield sink
    finally:
        logger.setLevel(saved)


def post_processing_tail(model) -> list[str]:
    """Nodes with no weighted layer at or after them on any path: the output tail of the graph."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    feeds_weights: dict[str, bool] = {}
    for node in reversed(list(model.graph.node)):  # ONNX nodes are topologically sorted
        feeds_weights[node.name] = node.op_type in WEIGHTED_OPS or any(
            feeds_weights.get(c.name, False) for o in node.output for c in consumers.get(o, []))
    return [n.name for n in model.graph.node if not feeds_weights[n.name]]


def high_precision_nodes(model) -> list[str]:
    tail = set(post_processing_tail(model))
    return [n.name for n in model.graph.node if n.name in tail or n.op_type in SENSITIVE_OPS]


def unquantized_nodes(model) -> list[dict]:
    """Arithmetic nodes of a Q/DQ model that read no DequantizeLinear output: they run in high precision.

    Data-movement ops (Reshape, Transpose, Concat) and activations that TensorRT fuses into the
    preceding layer (Relu) are left out: their precision follows their neighbours.
    """
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [{"node": n.name, "op": n.op_type} for n in model.graph.node
            if n.op_type in ARITHMETIC_OPS and not any(i in dq_out for i in n.input)]


def copy_metadata(src_model, dst_model, extra: dict) -> None:
    """Keep the fbtool.* metadata (recipe, anchors, preprocessing, layout) and add precision facts."""
    from ..onnx_meta import set_metadata

    have = {p.key for p in dst_model.metadata_props}
    for p in src_model.metadata_props:
        if p.key not in have:
            q = dst_model.metadata_props.add()
            q.key, q.value = p.key, p.value
    set_metadata(dst_model, extra)


def private_copy(src: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """A copy of `src` for a third-party tool: Model Optimizer rewrites its input in place (shape
    inference) and writes `_named`/`_opset19`/`_reconciled` files beside it; none of that may touch
    the run folder's recorded model."""
    dst = Path(tempfile.mkdtemp(prefix="in-", dir=folder)) / Path(src).name
    shutil.copyfile(src, dst)
    return dst


def quantize_int8(src_onnx: str | os.PathLike, calib_data, method: str, cache_path: str | os.PathLike,
                  out_path: str | os.PathLike) -> dict:
    """Write a Q/DQ INT8 ONNX to `out_path` (atomically). Returns what was quantized and what was not."""
    import numpy as np
    import onnx

    require("modelopt.onnx.quantization", "INT8 Q/DQ quantization", "pip install nvidia-modelopt==0.47.0 (see README)")
    from modelopt.onnx.quantization import quantize

    src = onnx.load(str(src_onnx))
    keep = high_precision_nodes(src)
    log = io.StringIO()
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="fbtool-modelopt-") as td, atomic_path(out_path) as final:
        private = private_copy(src_onnx, td)
        tmp = Path(td) / "out" / out_path.name  # Model Optimizer's own outputs stay in the private folder
        tmp.parent.mkdir()
        try:
            with quiet(log):
                quantize(str(private), quantize_mode="int8", calibration_data=np.ascontiguousarray(calib_data),
                         calibration_method=method, calibration_cache_path=str(cache_path),
                         calibration_eps=["cpu"], high_precision_dtype="fp32",
                         nodes_to_exclude=[f"^{re.escape(n)}$" for n in keep],
                         output_path=str(tmp), log_level="ERROR")
        except Exception as exc:
            tail = log.getvalue().strip().splitlines()[-1:] or [""]
            raise FbtoolError(f"Model Optimizer INT8 quantization failed: {str(exc).splitlines()[0][:120]}",
                              f"last log line: {tail[0][:120]}") from None
        model = onnx.load(str(tmp))
        qnodes = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
        if qnodes == 0:
            raise FbtoolError("Model Optimizer inserted no Q/DQ node", "is the model already quantized?")
        kept = unquantized_nodes(model)
        copy_metadata(src, model, {"precision": "int8-qdq", "calibration_method": method,
                                   "int8_high_precision_nodes": sorted(set(keep) | {k["node"] for k in kept})})
        onnx.save(model, str(final))
    return {"method": method, "quantize_linear_nodes": qnodes, "excluded_by_fbtool": keep,
            "high_precision_nodes": kept, "bytes": out_path.stat().st_size}
