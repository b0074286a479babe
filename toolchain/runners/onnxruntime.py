"""onnxruntime runner (CPU here; CUDA/TensorRT execution providers where installed)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import FbtoolError, require


class OrtRunner:
    def __init__(self, onnx_path, providers: list[str] | None = None, threads: int | None = None):
        ort = require("onnxruntime", "running ONNX models", "pip install onnxruntime")
        self.path = str(onnx_path)
        if not os.path.isfile(self.path):
            raise FbtoolError(f"ONNX file {self.path} does not exist", "run `fbtool export` first")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(self.path, so, providers=providers or ["CPUExecutionProvider"])
        self.name = f"onnxruntime:{os.path.basename(self.path)}"
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtype = np.float16 if "float16" in self.session.get_inputs()[0].type else np.float32

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except Exception as exc:
            return False, f"onnxruntime does not import: {exc}"
        return True, f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}"

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(feed[self.input_name] if self.input_name in feed else next(iter(feed.values())))
        outs = self.session.run(None, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}
