"""runners.open_runner: the one place that picks a runtime (validate, the blur job and the emulation use it)."""

from __future__ import annotations

import pytest

from toolchain.errors import FbtoolError, MissingDependency
from toolchain.runners import available, open_runner


def test_onnxruntime_and_torch_open_here(onnx_path, recipe, classroom_frame):
    from toolchain.detector import detect_batch

    ort = open_runner("onnxruntime", onnx_path)
    torch = open_runner("torch", recipe=recipe)
    a, b = detect_batch([classroom_frame], recipe, ort)[0], detect_batch([classroom_frame], recipe, torch)[0]
    assert len(a) == len(b) > 0


def test_a_runtime_that_cannot_run_here_says_why(tmp_path):
    ok, why = available("tensorrt")
    if ok:
        pytest.skip("TensorRT runs here")
    with pytest.raises(MissingDependency) as e:
        open_runner("tensorrt", tmp_path / "model.engine", hint="use onnxruntime here")
    assert why in str(e.value) and "use onnxruntime here" in str(e.value)


def test_unknown_runner_is_refused():
    assert available("tvm") == (False, "unknown runner 'tvm' (one of torch, onnxruntime, tensorrt, tensorrt-rtx)")
    with pytest.raises(FbtoolError, match="unknown runner"):
        open_runner("tvm")
