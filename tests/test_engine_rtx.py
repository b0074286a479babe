"""Real engine builds with TensorRT for RTX on the CPU, through the same build code that serves TensorRT.

TensorRT-RTX (module tensorrt_rtx) is the one TensorRT-family builder that installs here; it builds
ahead of time for a compute capability (SM86 by default without a GPU). Its engines cannot be run here
(no GPU; the H100 refuses them), so these tests prove that the exported, surgered, AutoCast-fp16 and
Q/DQ-int8 graphs parse and build, and that the engine, its manifest and the run-folder record are right.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from toolchain.engine.build import BuildOptions, build_engine
from toolchain.errors import FbtoolError
from toolchain.fsutil import sha256_file
from toolchain.runfolder import RunFolder
from toolchain.trt.manifest import RunningInfo, assert_compatible, check_compatible, load_manifest

trt_rtx = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed (pip install 'fbtool[rtx]')")

RTX = dict(runtime="tensorrt-rtx")


def _copy_run(src_run, dst):
    """A private run folder holding the session export (stages write into it)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src_run / "model.onnx", dst / "model.onnx")
    RunFolder(dst).record("export", {"onnx": dst / "model.onnx"})
    return dst


@pytest.fixture(scope="module")
def rtx_run(exported, tmp_path_factory):
    """Run folder with the export plus an AutoCast fp16 ONNX recorded as calibrate's "fp16" artifact.

    The fp16 graph is made with Model Optimizer's AutoCast directly (the producer `fbtool calibrate`
    uses, without its slower accuracy gate), keeping fp32 I/O as calibrate does.
    """
    run = _copy_run(exported[0], tmp_path_factory.mktemp("rtx"))
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    model = convert_to_mixed_precision(str(run / "model.onnx"), low_precision_type="fp16", keep_io_types=True)
    onnx.save(model, str(run / "model_fp16.onnx"))
    RunFolder(run).record("calibrate", {"fp16": run / "model_fp16.onnx"})
    return run


def _check_manifest(recipe, run, info, precision, onnx_name):
    engine = run / info["engine"].split("/")[-1]
    assert engine.name == f"{onnx_name}_b{recipe.input.batch.max}_rtx-sm86_{precision}.engine"
    assert engine.is_file() and engine.stat().st_size == info["bytes"] > 100_000
    m = load_manifest(info["manifest"])
    assert m["tensorrt"]["runtime"] == "tensorrt-rtx" and m["tensorrt"]["version"] == trt_rtx.__version__
    assert m["precision"] == precision and m["gpu"]["targets"] == ["SM86"]
    b = recipe.input.batch
    assert m["profile"]["min"] == [b.min, 3, 384, 640] and m["profile"]["max"] == [b.max, 3, 384, 640]
    assert m["profile"]["opt"] == [b.opt, 3, 384, 640]
    ins = [t for t in m["io"] if t["mode"] == "input"]
    assert ins == [{"name": "input", "mode": "input", "dtype": "FLOAT", "shape": [-1, 3, 384, 640]}]
    assert m["engine"]["sha256"] == sha256_file(engine)
    assert m["onnx"]["sha256"] == sha256_file(run / onnx_name) and m["onnx"]["file"] == onnx_name
    assert m["build"]["seconds"] > 0
    # the run folder records the stage and both artifacts
    rf = RunFolder(run)
    assert rf.artifact("build-engine", "engine") == engine
    assert rf.artifact("build-engine", "engine_manifest").name == engine.name + ".json"
    # an RTX engine fits an RTX GPU of its target CC, not an H100 nor full TensorRT
    assert_compatible(m, RunningInfo("tensorrt-rtx", trt_rtx.__version__, "RTX A6000", "8.6"), engine)
    assert check_compatible(m, RunningInfo("tensorrt-rtx", trt_rtx.__version__, "NVIDIA H100", "9.0"))[0]
    with pytest.raises(FbtoolError, match="cannot run here"):
        assert_compatible(m, RunningInfo("tensorrt", "10.3.0", "RTX A6000", "8.6"), engine)
    return m


def test_rtx_builds_fp32_and_fp16_with_dynamic_batch(recipe, rtx_run):
    fp32 = build_engine(recipe, rtx_run, BuildOptions(precision="fp32", **RTX))
    m32 = _check_manifest(recipe, rtx_run, fp32, "fp32", "model.onnx")
    assert m32["plan"]["route"] == "fp32" and m32["plan"]["strongly_typed"] is True
    outs = {t["name"]: t["shape"] for t in m32["io"] if t["mode"] == "output"}
    assert outs == {"loc": [-1, 10080, 4], "conf": [-1, 10080, 2], "landmarks": [-1, 10080, 10]}

    fp16 = build_engine(recipe, rtx_run, BuildOptions(precision="fp16", **RTX))
    m16 = _check_manifest(recipe, rtx_run, fp16, "fp16", "model_fp16.onnx")
    assert m16["plan"]["route"] == "fp16-autocast" and m16["plan"]["builder_flags"] == []
    assert m16["engine"]["sha256"] != m32["engine"]["sha256"]
    # the AutoCast graph keeps fp32 I/O, so the engine's I/O stays FLOAT for nvinfer and the runner
    assert {t["dtype"] for t in m16["io"]} == {"FLOAT"}
    stage = json.loads((rtx_run / "manifest.json").read_text())["stages"]["build-engine"]
    assert stage["info"]["precision"] == "fp16" and stage["info"]["runtime"] == "tensorrt-rtx"


def test_rtx_builds_surgered_decoded_graph(recipe, exported, tmp_path):
    from toolchain.surgery.stage import surgery

    run = _copy_run(exported[0], tmp_path)
    settings = dataclasses.replace(recipe.surgery, decode=True, top_k=1000)
    surgery(recipe, run, settings=settings, check=False)
    info = build_engine(recipe, run, BuildOptions(precision="fp32", **RTX))
    assert info["plan"]["onnx"] == ["surgery", "onnx"]  # the surgered graph wins over the export
    outs = {t["name"]: t["shape"] for t in info["io"] if t["mode"] == "output"}
    assert outs == {"det_boxes": [-1, 1000, 4], "det_scores": [-1, 1000], "det_landmarks": [-1, 1000, 10]}


def test_rtx_builds_int8_qdq_graph(recipe, rtx_run, tmp_path):
    """Records whether TensorRT-RTX takes Model Optimizer's INT8 Q/DQ graph (it does, strongly typed)."""
    from modelopt.onnx.quantization import quantize

    from toolchain.calibset import spread_frames
    from toolchain.reference.preprocess import preprocess_batch

    run = _copy_run(rtx_run, tmp_path)
    frames = [f.image for f in spread_frames(recipe.calibration_media, 8)]
    x, _ = preprocess_batch(frames, recipe)
    quantize(str(run / "model.onnx"), quantize_mode="int8", calibration_data={"input": x},
             calibration_method="entropy", calibration_eps=["cpu"], high_precision_dtype="fp32",
             output_path=str(run / "model_int8.onnx"), log_level="ERROR")
    RunFolder(run).record("calibrate", {"int8_qdq": run / "model_int8.onnx"})
    info = build_engine(recipe, run, BuildOptions(precision="int8", **RTX))
    m = _check_manifest(recipe, run, info, "int8", "model_int8.onnx")
    assert m["plan"]["route"] == "int8-qdq" and m["network_mode"] == 1


def test_rtx_refusals_leave_nothing_behind(recipe, exported, tmp_path):
    run = _copy_run(exported[0], tmp_path)
    before = sorted(p.name for p in run.iterdir())
    manifest_before = (run / "manifest.json").read_text()
    with pytest.raises(FbtoolError, match="no implicit INT8"):
        build_engine(recipe, run, BuildOptions(precision="int8", int8_mode="implicit", **RTX))
    with pytest.raises(FbtoolError, match="needs the 'fp16' artifact"):
        build_engine(recipe, run, BuildOptions(precision="fp16", **RTX))
    with pytest.raises(FbtoolError, match="compute-capability targets"):
        build_engine(recipe, run, BuildOptions(precision="fp32", version_compatible=True, **RTX))
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / "manifest.json").read_text() == manifest_before


def test_rtx_parse_error_is_one_line(recipe, exported, tmp_path):
    import onnx
    from onnx import helper

    run = _copy_run(exported[0], tmp_path)
    # a graph TensorRT cannot parse: an op from a custom domain with no plugin
    node = helper.make_node("NoSuchOp", ["input"], ["loc"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                                          ["batch", 3, 384, 640])],
                              [helper.make_tensor_value_info("loc", onnx.TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(run / "model.onnx"))
    with pytest.raises(FbtoolError, match="cannot parse model.onnx") as e:
        build_engine(recipe, run, BuildOptions(precision="fp32", **RTX))
    assert "\n" not in str(e.value)
    assert not list(run.glob("*.engine*"))


def test_adapter_logger_keeps_tensorrt_errors():
    """The Python ILogger subclass really receives TensorRT's messages (what build errors quote)."""
    from toolchain.trt.adapter import Backend

    errors: list[str] = []
    backend = Backend("tensorrt-rtx")
    builder = trt_rtx.Builder(backend.logger(errors))
    network = builder.create_network(backend.network_flags(True))
    assert network.get_flag(trt_rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    config = builder.create_builder_config()
    assert backend.apply_target(config, ("SM80", "SM86"), False, "none") == {"targets": ["SM80", "SM86"]}
    assert config.num_compute_capabilities == 2
    assert builder.build_serialized_network(network, config) is None  # an empty network has no output
    assert errors and "at least one output" in errors[-1]
