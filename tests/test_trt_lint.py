"""TensorRT 10 compatibility lint: clean on the default model's final graph, clear failures otherwise."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from toolchain.errors import FbtoolError
from toolchain.surgery.trt_lint import lint_model, load_table


def model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def vi(name, shape, ty=TP.FLOAT):
    return helper.make_tensor_value_info(name, ty, shape)


def errors(m) -> list[str]:
    return [str(f) for f in lint_model(m).errors]


def test_table_is_consistent():
    t = load_table()
    assert t["opset"]["min"] <= 18 <= t["opset"]["max"]
    assert not set(t["ops"]) & set(t["unsupported"])
    for op, types in t["ops"].items():
        assert types and set(types) <= {"FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "UINT8", "BOOL",
                                        "FP8", "FP4", "INT4"}, op
    assert set(t["restrictions"]) <= set(t["ops"])


def test_default_model_final_graph_is_clean(recipe, onnx_path):
    from toolchain.surgery import run_passes

    for decode in (False, True):
        import dataclasses

        out, _ = run_passes(onnx.load(str(onnx_path)), recipe,
                            settings=dataclasses.replace(recipe.surgery, decode=decode, top_k=750 if decode else 0))
        report = lint_model(out)
        assert report.ok, report.errors
        assert report.ops["Conv"] == 56


def test_unsupported_op_fails_with_node_name_and_reason():
    m = model([helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
               helper.make_node("Unique", ["r"], ["y"], name="dedupe")], [vi("x", ["batch", 4])], [vi("y", [None])])
    errs = errors(m)
    assert errs == ["node 'dedupe' (Unique): listed as not supported by the ONNX-TensorRT parser"]
    with pytest.raises(FbtoolError, match=r"will not parse in TensorRT 10: node 'dedupe' \(Unique\)"):
        lint_model(m).check()


def test_custom_domain_and_unknown_op():
    n = helper.make_node("MyNms", ["x"], ["y"], name="plugin_nms", domain="com.example")
    m = model([n], [vi("x", ["batch", 4])], [vi("y", ["batch", 4])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    assert "custom domain 'com.example' needs a TensorRT plugin" in errors(m)[0]


def test_data_types_are_checked_per_op():
    # Softmax runs on floats only: an INT64 or DOUBLE operand is named with the types TensorRT takes.
    m = model([helper.make_node("Cast", ["x"], ["d"], to=TP.DOUBLE, name="to_double"),
               helper.make_node("Softmax", ["d"], ["y"], name="sm")],
              [vi("x", ["batch", 4])], [vi("y", ["batch", 4], TP.DOUBLE)])
    errs = errors(m)
    assert any("node 'to_double' (Cast): output 'd' is DOUBLE" in e for e in errs)
    assert any("node 'sm' (Softmax): input 'd' is DOUBLE; TensorRT 10 runs Softmax on FP32, FP16, BF16 only" in e
               for e in errs)
    assert any("'y' is DOUBLE" in e for e in errs)  # graph output type


def test_restrictions_topk_resize_constant_axes_and_opset():
    k_big = numpy_helper.from_array(np.array([5000], np.int64), "k")
    m = model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, name="topk")],
              [vi("x", ["batch", 10080])], [vi("v", ["batch", 5000]), vi("i", ["batch", 5000], TP.INT64)], [k_big])
    assert "must be below 3840" in errors(m)[0]
    m = model([helper.make_node("TopK", ["x", "kin"], ["v", "i"], axis=1, name="topk_dyn")],
              [vi("x", ["batch", 100]), vi("kin", [1], TP.INT64)], [vi("v", ["batch", None]), vi("i", ["batch", None], TP.INT64)])
    assert "input 1 ('kin') must be a build-time constant" in errors(m)[0]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    m = model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="up")],
              [vi("x", ["batch", 3, 4, 4])], [vi("y", ["batch", 3, 8, 8])], [scales])
    assert "attribute mode='cubic' is not supported" in errors(m)[0]
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", ["batch", 4])], [vi("y", ["batch", 4])], opset=21)
    assert errors(m) == ["node '<model>' (opset): opset 21 is outside TensorRT 10's 9..20"]


def test_cli_lint_only(onnx_path, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli

    res = CliRunner().invoke(cli, ["surgery", "--lint-only", "-o", str(tmp_path), "--onnx", str(onnx_path)])
    assert res.exit_code == 0, res.output
    assert "TensorRT 10 lint clean" in res.output and "Conv x56" in res.output
    bad = tmp_path / "bad.onnx"
    onnx.save(model([helper.make_node("Unique", ["x"], ["y"], name="dedupe")], [vi("x", [4])], [vi("y", [None])]),
              str(bad))
    res = CliRunner().invoke(cli, ["surgery", "--lint-only", "-o", str(tmp_path), "--onnx", str(bad)])
    assert res.exit_code == 2
    assert "error: node 'dedupe' (Unique): listed as not supported" in res.output
    assert "will not parse in TensorRT 10" in res.output
