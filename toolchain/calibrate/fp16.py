"""FP16: Model Optimizer AutoCast, fp16 inside, fp32 inputs and outputs.

TensorRT 11 takes fp16 from fp16-typed tensors in the ONNX (no FP16 builder flag), so the precision
decision is made here, where it can be checked. Overflow check: any tensor whose calibration amax
(from the shared statistics pass) comes within a factor HEADROOM of fp16's largest value (65504)
has its producing node kept in fp32. AutoCast adds its own range rule (nodes whose inputs/outputs
exceed `data_max` on the reference run, fed here with real calibration frames, stay fp32). The
post-processing tail (softmax, and the exp/mul/add of an in-graph decode, whose pixel coordinates
would lose up to half a pixel in fp16) also stays fp32. Every node left in fp32 is recorded.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import FbtoolError, require
from ..fsutil import atomic_path
from .qdq import copy_metadata, high_precision_nodes, private_copy, quiet
from .stats import FP16_MAX

HEADROOM = 4.0  # an activation seen at 16k on 64 frames may reach 65504 on some other frame


def overflow_risks(stats, headroom: float = HEADROOM) -> list[dict]:
    """Tensors whose calibration amax would leave less than `headroom` to fp16's max."""
    limit = FP16_MAX / headroom
    return [{"tensor": n, "node": stats.producers.get(n, ""), "amax": stats.amax[n]}
            for n in stats.names if stats.amax[n] > limit]


def fp32_nodes(model) -> list[dict]:
    """Nodes of the converted model that still compute in fp32 (Cast nodes left out)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    out = []
    for n in model.graph.node:
        if n.op_type in ("Cast", "Constant"):
            continue
        if any(types.get(o) == onnx.TensorProto.FLOAT for o in n.output):
            out.append({"node": n.name, "op": n.op_type})
    return out


def convert_fp16(src_onnx: str | os.PathLike, calib_batch: np.ndarray, out_path: str | os.PathLike,
                 stats=None, input_name: str = "input") -> dict:
    """Write the fp16 model to `out_path` (atomically); returns the overflow check and the fp32 node list."""
    import onnx

    require("modelopt.onnx.autocast", "FP16 conversion (AutoCast)", "pip install nvidia-modelopt==0.47.0 (see README)")
    from modelopt.onnx.autocast import convert_to_mixed_precision

    src = onnx.load(str(src_onnx))
    risks = overflow_risks(stats) if stats is not None else []
    keep = sorted(set(high_precision_nodes(src)) | {r["node"] for r in risks if r["node"]})
    log = io.StringIO()
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as td, atomic_path(out_path) as tmp:
        data = Path(td) / "calib.npz"
        feed: dict = {input_name: np.ascontiguousarray(calib_batch, dtype=np.float32)}
        np.savez(data, **feed)
        private = private_copy(src_onnx, td)
        try:
            with quiet(log):
                model = convert_to_mixed_precision(
                    str(private), low_precision_type="fp16", keep_io_types=True, calibration_data=str(data),
                    nodes_to_exclude=[f"^{re.escape(n)}$" for n in keep], providers=["cpu"])
        except Exception as exc:
            raise FbtoolError(f"Model Optimizer AutoCast failed: {str(exc).splitlines()[0][:120]}",
                              "run with -v for the traceback") from None
        kept = fp32_nodes(model)
        copy_metadata(src, model, {"precision": "fp16", "fp16_fp32_nodes": [k["node"] for k in kept]})
        onnx.save(model, str(tmp))
    return {"fp32_nodes": kept, "excluded_by_fbtool": keep, "overflow_risks": risks,
            "headroom": HEADROOM, "bytes": out_path.stat().st_size}
