"""Engine-build decisions in plain Python: strong typing and flags per TensorRT major and precision,
the refusal cases, profile shapes, engine naming, manifest compatibility. No TensorRT needed."""

from __future__ import annotations

import dataclasses

import pytest

from toolchain.engine import decisions as D
from toolchain.errors import FbtoolError
from toolchain.trt.manifest import RunningInfo, check_compatible
from toolchain.trt.naming import engine_file_name, manifest_path, parse_engine_file_name, rtx_engine_file_name
from toolchain.trt.versions import hardware_compat_name

EXPORT = ("export", "onnx")
SURGERY = ("surgery", "onnx")
ALL = {EXPORT, D.FP16_ONNX, D.QDQ_ONNX, D.CALIB_SET, D.CALIB_CACHE}
TRT10 = D.Target("tensorrt", 10, "10.3.0")
TRT11 = D.Target("tensorrt", 11, "11.0.0")
RTX = D.Target("tensorrt-rtx", 11, "1.7.1")


# ---- targets -------------------------------------------------------------------------------

def test_make_target_majors_and_refusals():
    assert D.make_target("tensorrt", "10.3.0.26").major == 10
    assert D.make_target("tensorrt", "11.1.0").strongly_typed_only
    assert not D.make_target("tensorrt", "10.16.1").strongly_typed_only
    assert D.make_target("tensorrt", None, 11).major == 11  # --trt-major without TensorRT (dry run)
    assert D.make_target("tensorrt-rtx", "1.7.1.116").strongly_typed_only
    with pytest.raises(FbtoolError, match="8.x is not supported"):
        D.make_target("tensorrt", "8.6.1")
    with pytest.raises(FbtoolError, match="does not match the installed"):
        D.make_target("tensorrt", "10.3.0", 11)
    with pytest.raises(FbtoolError, match="--trt-major"):
        D.make_target("tensorrt", None)
    with pytest.raises(FbtoolError, match="unknown runtime"):
        D.make_target("onnxruntime", "1.0")


# ---- plans ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [TRT10, TRT11, RTX])
def test_fp32_parses_base_graph_without_flags(target):
    p = D.plan_build("fp32", target, ALL)
    assert (p.precision, p.onnx, p.builder_flags, p.calibrator) == ("fp32", EXPORT, (), False)
    assert p.strongly_typed == target.strongly_typed_only
    assert p.network_mode == 0


def test_surgered_graph_is_preferred_base():
    assert D.plan_build("fp32", TRT10, ALL | {SURGERY}).onnx == SURGERY
    assert D.plan_build("fp16", TRT10, {EXPORT, SURGERY}).onnx == SURGERY  # FP16 flag on the surgered graph


def test_trt10_fp16_flag_or_autocast():
    flag = D.plan_build("fp16", TRT10, {EXPORT})
    assert (flag.route, flag.builder_flags, flag.strongly_typed, flag.onnx) == ("fp16-flag", ("FP16",), False, EXPORT)
    auto = D.plan_build("fp16", TRT10, ALL)  # auto prefers the AutoCast ONNX when calibrate made one
    assert (auto.route, auto.builder_flags, auto.strongly_typed, auto.onnx) == ("fp16-autocast", (), True,
                                                                                D.FP16_ONNX)
    forced = D.plan_build("fp16", TRT10, ALL, fp16_mode="flag")
    assert forced.builder_flags == ("FP16",) and forced.onnx == EXPORT
    with pytest.raises(FbtoolError, match="run `fbtool calibrate`"):
        D.plan_build("fp16", TRT10, {EXPORT}, fp16_mode="autocast")
    assert flag.network_mode == 2


@pytest.mark.parametrize("target", [TRT11, RTX])
def test_strongly_typed_targets_take_precision_from_onnx(target):
    f = D.plan_build("fp16", target, ALL)
    assert (f.onnx, f.builder_flags, f.strongly_typed) == (D.FP16_ONNX, (), True)
    i = D.plan_build("int8", target, ALL)
    assert (i.onnx, i.builder_flags, i.strongly_typed, i.calibrator) == (D.QDQ_ONNX, (), True, False)
    with pytest.raises(FbtoolError, match="needs the 'fp16' artifact"):
        D.plan_build("fp16", target, {EXPORT})
    with pytest.raises(FbtoolError, match="needs the 'int8_qdq' artifact"):
        D.plan_build("int8", target, {EXPORT})


def test_trt10_int8_qdq_and_implicit():
    q = D.plan_build("int8", TRT10, ALL)
    assert (q.route, q.onnx, q.strongly_typed, q.builder_flags) == ("int8-qdq", D.QDQ_ONNX, True, ())
    imp = D.plan_build("int8", TRT10, ALL, int8_mode="implicit")
    assert (imp.route, imp.onnx, imp.builder_flags, imp.calibrator, imp.strongly_typed) == (
        "int8-implicit", EXPORT, ("INT8",), True, False)
    assert imp.network_mode == 1
    # the calibration cache alone is enough (TensorRT reads it instead of calibrating)
    assert D.plan_build("int8", TRT10, {EXPORT, D.CALIB_CACHE}, int8_mode="implicit").calibrator
    with pytest.raises(FbtoolError, match="neither"):
        D.plan_build("int8", TRT10, {EXPORT}, int8_mode="implicit")


@pytest.mark.parametrize("target,who", [(TRT11, "TensorRT 11"), (RTX, "TensorRT-RTX")])
def test_refuses_implicit_int8_and_fp16_flag_on_strongly_typed(target, who):
    with pytest.raises(FbtoolError, match=f"{who}.*no implicit INT8") as e:
        D.plan_build("int8", target, ALL, int8_mode="implicit")
    assert "--int8-mode qdq" in e.value.hint
    with pytest.raises(FbtoolError, match="no FP16 builder flag"):
        D.plan_build("fp16", target, ALL, fp16_mode="flag")
    with pytest.raises(FbtoolError, match="no implicit INT8"):
        D.plan_build("best", target, ALL, int8_mode="implicit")


def test_best_resolves_to_a_concrete_precision():
    b10 = D.plan_build("best", TRT10, ALL)
    assert (b10.precision, b10.onnx, set(b10.builder_flags), b10.strongly_typed) == ("int8", D.QDQ_ONNX,
                                                                                     {"FP16", "INT8"}, False)
    assert D.plan_build("best", TRT10, {EXPORT}).builder_flags == ("FP16",)
    assert D.plan_build("best", TRT11, ALL).onnx == D.QDQ_ONNX
    assert D.plan_build("best", RTX, {EXPORT, D.FP16_ONNX}).precision == "fp16"
    only_base = D.plan_build("best", RTX, {EXPORT})
    assert only_base.precision == "fp32" and "fbtool calibrate" in only_base.notes[0]
    for t in (TRT10, TRT11, RTX):
        for avail in (ALL, {EXPORT}, {EXPORT, D.FP16_ONNX}):
            assert D.plan_build("best", t, avail).precision in ("fp32", "fp16", "int8")


def test_no_onnx_and_unknown_values():
    with pytest.raises(FbtoolError, match="no ONNX"):
        D.plan_build("fp32", TRT10, set())
    with pytest.raises(FbtoolError, match="unknown precision"):
        D.plan_build("int4", TRT10, ALL)
    with pytest.raises(FbtoolError, match="unknown INT8 mode"):
        D.plan_build("int8", TRT10, ALL, int8_mode="dynamic")


def test_portability_refusals():
    plan = D.plan_build("fp16", TRT10, ALL)
    D.check_portability(TRT10, plan, True, "ampere-plus")  # fine on TensorRT
    with pytest.raises(FbtoolError, match="compute-capability targets"):
        D.check_portability(RTX, D.plan_build("fp16", RTX, ALL), True, "none")
    with pytest.raises(FbtoolError, match="implicit INT8"):
        D.check_portability(TRT10, D.plan_build("int8", TRT10, ALL, int8_mode="implicit"), False, "same-cc")
    assert hardware_compat_name("ampere-plus") == "AMPERE_PLUS"
    with pytest.raises(FbtoolError):
        hardware_compat_name("turing")


def test_rtx_targets():
    assert D.rtx_targets((), None) == ("SM86",)  # CPU-only build
    assert D.rtx_targets((), "8.9") == ("SM89",)
    assert D.rtx_targets((), "9.0") == ("SM86",)  # an H100 cannot run TensorRT-RTX engines
    assert D.rtx_targets(("8.0", "sm86", "SM86"), None) == ("SM80", "SM86")
    with pytest.raises(FbtoolError, match="cannot target"):
        D.rtx_targets(("SM90",), None)


# ---- profile -------------------------------------------------------------------------------

def test_profile_from_recipe_batch(recipe):
    p = D.profile_for(recipe, ["batch", 3, 384, 640])
    b = recipe.input.batch
    assert p.min == (b.min, 3, 384, 640) and p.opt == (b.opt, 3, 384, 640) and p.max == (b.max, 3, 384, 640)
    assert p.max_batch == b.max and p.input == recipe.input.name
    assert p.accepts((b.max, 3, 384, 640)) and not p.accepts((b.max + 1, 3, 384, 640))


def test_profile_static_batch_and_mismatch(recipe):
    p = D.profile_for(recipe, [2, 3, 384, 640])  # a static batch in the ONNX wins
    assert p.min[0] == p.opt[0] == p.max[0] == 2
    with pytest.raises(FbtoolError, match="another recipe"):
        D.profile_for(recipe, ["batch", 3, 320, 640])
    with pytest.raises(FbtoolError, match="4"):
        D.profile_for(recipe, ["batch", 3, 384])


def test_profile_dynamic_hw(recipe):
    r = dataclasses.replace(recipe, input=dataclasses.replace(recipe.input, dynamic_hw=True))
    p = D.profile_for(r, ["batch", 3, "h", "w"])
    assert p.opt[2:] == (384, 640)
    assert p.min[2:] == (192, 320) and p.max[2:] == (768, 1280)
    assert all(v % 32 == 0 for v in p.min[2:] + p.max[2:])


# ---- naming --------------------------------------------------------------------------------

def test_engine_name_is_nvinfers():
    # nvdsinfer_model_builder.cpp: modelPath + "_b" + maxBatchSize + "_" + "gpu<id>" + "_" + mode + ".engine"
    assert engine_file_name("model.onnx", 16, "fp16") == "model.onnx_b16_gpu0_fp16.engine"
    assert engine_file_name("/run/model_int8_entropy.onnx", 4, "int8", gpu_id=1) == \
        "model_int8_entropy.onnx_b4_gpu1_int8.engine"
    assert engine_file_name("m.onnx", 1, "fp32", dla_core=0) == "m.onnx_b1_dla0_fp32.engine"
    with pytest.raises(FbtoolError, match="suffix"):
        engine_file_name("model.onnx", 16, "best")  # nvinfer would name BEST engines "_UNKNOWN"
    parsed = parse_engine_file_name("model.onnx_b16_gpu0_fp16.engine")
    assert parsed == {"model": "model.onnx", "max_batch": 16, "device": "gpu", "id": 0, "precision": "fp16"}
    rtx = rtx_engine_file_name("model.onnx", 16, "fp16", ("SM86", "SM89"))
    assert rtx == "model.onnx_b16_rtx-sm86-sm89_fp16.engine" and parse_engine_file_name(rtx) is None
    assert manifest_path("/r/model.onnx_b16_gpu0_fp16.engine").name == "model.onnx_b16_gpu0_fp16.engine.json"


# ---- manifest compatibility ----------------------------------------------------------------

def _manifest(runtime="tensorrt", version="10.3.0.26", cc="8.6", name="NVIDIA A10", vc=False, hw="none",
              targets=None):
    gpu = {"name": name, "cc": cc}
    if targets:
        gpu["targets"] = targets
    return {"schema": 1, "tensorrt": {"runtime": runtime, "version": version}, "gpu": gpu, "driver": "550.54",
            "portability": {"version_compatible": vc, "hardware_compatibility": hw}}


def test_compatible_same_machine():
    errors, warnings = check_compatible(_manifest(), RunningInfo("tensorrt", "10.3.0.26", "NVIDIA A10", "8.6", "550.54"))
    assert errors == [] and warnings == []


def test_foreign_tensorrt_version_and_gpu():
    errors, _ = check_compatible(_manifest(), RunningInfo("tensorrt", "10.9.0", "NVIDIA A10", "8.6"))
    assert len(errors) == 1 and "tied to the TensorRT version" in errors[0]
    errors, _ = check_compatible(_manifest(), RunningInfo("tensorrt", "10.3.0.26", "NVIDIA H100", "9.0"))
    assert "compute capability 8.6" in errors[0]
    errors, warnings = check_compatible(_manifest(), RunningInfo("tensorrt", "10.3.0.26", "NVIDIA A40", "8.6", "560"))
    assert errors == [] and any("A40" in w for w in warnings) and any("driver" in w for w in warnings)


def test_version_compatible_and_lean_runtime():
    m = _manifest(vc=True)
    assert check_compatible(m, RunningInfo("tensorrt-lean", "10.16.1", "NVIDIA A10", "8.6"))[0] == []
    assert check_compatible(m, RunningInfo("tensorrt", "11.1.0", "NVIDIA A10", "8.6"))[0] == []
    assert "or newer" in check_compatible(m, RunningInfo("tensorrt", "10.2.0", "NVIDIA A10", "8.6"))[0][0]
    errors, _ = check_compatible(_manifest(), RunningInfo("tensorrt-lean", "10.3.0.26", "NVIDIA A10", "8.6"))
    assert "only runs version-compatible" in errors[0]


def test_hardware_compatible():
    m = _manifest(hw="ampere-plus")
    assert check_compatible(m, RunningInfo("tensorrt", "10.3.0.26", "NVIDIA H100", "9.0"))[0] == []
    assert "Ampere" in check_compatible(m, RunningInfo("tensorrt", "10.3.0.26", "Tesla T4", "7.5"))[0][0]


def test_rtx_engines_only_on_rtx_and_target_cc():
    m = _manifest(runtime="tensorrt-rtx", version="1.7.1.116", cc=None, name=None, targets=["SM86"])
    assert check_compatible(m, RunningInfo("tensorrt-rtx", "1.7.1.116", "RTX A6000", "8.6"))[0] == []
    assert "SM90" in check_compatible(m, RunningInfo("tensorrt-rtx", "1.7.1.116", "NVIDIA H100", "9.0"))[0][0]
    assert "cannot load" in check_compatible(m, RunningInfo("tensorrt", "10.3.0", "RTX A6000", "8.6"))[0][0]
    trt_engine = _manifest()
    assert "TensorRT-RTX cannot load" in check_compatible(trt_engine, RunningInfo("tensorrt-rtx", "1.7.1", None,
                                                                                  "8.6"))[0][0]


# ---- GPU facts -----------------------------------------------------------------------------

def test_parse_nvidia_smi():
    from toolchain.trt.adapter import parse_nvidia_smi

    # as printed on the lent H100 machine (driver 580)
    banner = "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0     |"
    g = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0, 580.159.04\n", banner)
    assert (g.name, g.cc, g.driver, g.cuda_driver) == ("NVIDIA H100 80GB HBM3", "9.0", "580.159.04", "13.0")
    assert parse_nvidia_smi("") is None and parse_nvidia_smi("No devices were found") is None
