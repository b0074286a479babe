"""Graph surgery: ordered, pure passes over an onnx-graphsurgeon Graph, plus a TensorRT 10 lint.

Passes (one per module): sanitize, trt_hygiene, decode (decode-in-graph), io_names. See
docs/surgery.md. Heavy imports (onnx, graphsurgeon, onnxruntime) happen inside the functions.
"""

from .registry import PASS_NAMES, PassContext, PassReport, apply, pass_names, run_passes

__all__ = ["PASS_NAMES", "PassContext", "PassReport", "apply", "pass_names", "run_passes"]
