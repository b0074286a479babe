"""The TensorRT runner, and gated end-to-end tests: build fp32/fp16/int8 engines of the default model
with the real TensorRT, run them on real frames, and hold them to the recipe's validate tolerances
against PyTorch fp32 (toolchain.compare.metrics).

The gated tests run wherever `import tensorrt` works and torch sees a CUDA GPU (see docs/engine.md);
here they are skipped with the reason. The plain tests (dtype table, batch chunking, refusing to run
without TensorRT) run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from toolchain.errors import FbtoolError
from toolchain.runfolder import RunFolder
from toolchain.runners.tensorrt import TensorRTRunner, chunks, torch_dtype_name


def _gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_LEAN = importlib.util.find_spec("tensorrt_lean") is not None
TRT_REASON = ("needs TensorRT (`import tensorrt`) and a CUDA GPU visible to torch; "
              "see docs/engine.md 'Running the TensorRT tests'")


def gated(fn):
    """Marked tensorrt + gpu and skipped (before any fixture runs) where TensorRT or the GPU is missing."""
    fn = pytest.mark.skipif(not (HAS_TRT and _gpu()), reason=TRT_REASON)(fn)
    return pytest.mark.gpu(pytest.mark.tensorrt(fn))


# ---- plain ---------------------------------------------------------------------------------

def test_dtype_table_and_chunks():
    assert torch_dtype_name("FLOAT") == "float32" and torch_dtype_name("HALF") == "float16"
    assert torch_dtype_name("INT64") == "int64"
    with pytest.raises(FbtoolError, match="no torch equivalent"):
        torch_dtype_name("FP8")
    assert chunks(5, 16) == [(0, 5)]
    assert chunks(40, 16) == [(0, 16), (16, 32), (32, 40)]
    assert chunks(16, 16) == [(0, 16)]


def test_available_says_why_not():
    ok, why = TensorRTRunner.available("tensorrt")
    if not HAS_TRT:
        assert not ok and "tensorrt does not import" in why
    ok, why = TensorRTRunner.available("nonsense")
    assert not ok and "unknown runtime" in why


def test_runner_refuses_cleanly_without_its_runtime(tmp_path):
    engine = tmp_path / "model.onnx_b16_rtx-sm86_fp32.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(FbtoolError, match="manifest .* is missing"):
        TensorRTRunner(engine)
    manifest = {"schema": 1, "tensorrt": {"runtime": "tensorrt-rtx", "version": "1.7.1.116"},
                "gpu": {"targets": ["SM86"]}, "precision": "fp32"}
    (tmp_path / (engine.name + ".json")).write_text(json.dumps(manifest))
    if not TensorRTRunner.available("tensorrt-rtx")[0]:
        with pytest.raises(FbtoolError, match="cannot run model.onnx_b16_rtx-sm86_fp32.engine"):
            TensorRTRunner(engine)


# ---- gated: the real TensorRT --------------------------------------------------------------

@pytest.fixture(scope="module")
def trt_run(exported, tmp_path_factory, recipe):
    """A run folder with the export and a real `fbtool calibrate` (Q/DQ, AutoCast fp16, cache for this TensorRT)."""
    import tensorrt as trt

    from toolchain.calibrate.pipeline import calibrate

    run = tmp_path_factory.mktemp("trt")
    shutil.copy(exported[0] / "model.onnx", run / "model.onnx")
    RunFolder(run).record("export", {"onnx": run / "model.onnx"})
    version = ".".join(trt.__version__.split(".")[:3])
    if int(version.split(".")[0]) < 11:
        calibrate(recipe, run, methods=("entropy",), fp16=True, trt_version=version)
    else:
        calibrate(recipe, run, methods=("entropy",), fp16=True)
    return run


@pytest.fixture(scope="module")
def reference(recipe, torch_runner):
    from toolchain.detector import detect_frames
    from toolchain.frames import sample_frames

    frames = [f for _, _, f in sample_frames(recipe.validation_media, per_clip=6, step=5)]
    return frames, detect_frames(frames, recipe, torch_runner, batch=4)


def _validate(recipe, engine_path, reference, f1_tol, iou_tol, batch=4, runtime=None):
    from toolchain.compare.metrics import compare_detections
    from toolchain.detector import detect_frames

    frames, ref = reference
    runner = TensorRTRunner(engine_path, runtime=runtime)
    cand = detect_frames(frames, recipe, runner, batch=batch)
    summary, _ = compare_detections(ref, cand)
    assert summary.tp > 0, "the engine finds no face the reference finds"
    assert summary.f1 >= f1_tol, summary.to_dict()
    assert summary.mean_iou >= iou_tol, summary.to_dict()
    return runner, summary


@gated
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_passes_validate_tolerances(recipe, trt_run, reference, precision):
    from toolchain.engine.build import BuildOptions, build_engine

    info = build_engine(recipe, trt_run, BuildOptions(precision=precision))
    tol = recipe.tolerances
    f1, iou = {"fp32": (tol.detection_f1, tol.mean_iou), "fp16": (tol.fp16_f1, tol.mean_iou),
               "int8": (tol.int8_f1, tol.int8_mean_iou)}[precision]
    runner, _ = _validate(recipe, info["engine"], reference, f1, iou)
    assert info["engine"].endswith(f"_b{recipe.input.batch.max}_gpu0_{precision}.engine")
    # dynamic batch: every frame of a batch gets the same outputs as when run alone, across chunking
    from toolchain.reference.preprocess import preprocess_batch

    frames = reference[0]
    x, _ = preprocess_batch([frames[i % len(frames)] for i in range(recipe.input.batch.max + 3)], recipe)
    big = runner.infer({recipe.input.name: x})  # more than the profile's max: run in chunks
    one = runner.infer({recipe.input.name: x[-1:]})
    for name in runner.output_names:
        assert big[name].shape[0] == x.shape[0]
        np.testing.assert_allclose(big[name][-1:], one[name], atol=2e-2 if precision != "fp32" else 1e-3)


@gated
def test_tensorrt_implicit_int8_with_calibrator(recipe, trt_run, reference):
    import tensorrt as trt

    if int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT 11 has no implicit INT8 (the refusal is tested in test_engine_decisions.py)")
    from toolchain.engine.build import BuildOptions, build_engine

    info = build_engine(recipe, trt_run, BuildOptions(precision="int8", int8_mode="implicit"))
    assert info["plan"]["route"] == "int8-implicit"
    _validate(recipe, info["engine"], reference, recipe.tolerances.int8_f1, recipe.tolerances.int8_mean_iou)


@gated
def test_tensorrt_refuses_foreign_engine(recipe, trt_run):
    from toolchain.engine.build import BuildOptions, build_engine

    info = build_engine(recipe, trt_run, BuildOptions(precision="fp32"))
    mpath = info["manifest"]
    m = json.loads(open(mpath).read())
    m["tensorrt"]["version"] = "10.0.0.1" if not m["tensorrt"]["version"].startswith("10.0.0") else "10.1.0"
    open(mpath, "w").write(json.dumps(m))
    with pytest.raises(FbtoolError, match="cannot run here: the engine was built with tensorrt"):
        TensorRTRunner(info["engine"])


@gated
@pytest.mark.skipif(not HAS_LEAN, reason="the TensorRT lean runtime (tensorrt_lean) is not installed")
def test_lean_runtime_runs_version_compatible_engine(recipe, trt_run, reference):
    from toolchain.engine.build import BuildOptions, build_engine

    info = build_engine(recipe, trt_run, BuildOptions(precision="fp32", version_compatible=True))
    runner, _ = _validate(recipe, info["engine"], reference, recipe.tolerances.detection_f1,
                          recipe.tolerances.mean_iou, runtime="tensorrt-lean")
    assert runner.name.startswith("tensorrt-lean:")


LEAN_OR_FULL = [m for m in ("tensorrt", "tensorrt_lean") if importlib.util.find_spec(m) is not None]


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not (LEAN_OR_FULL and _gpu()), reason="needs tensorrt or tensorrt_lean and a CUDA GPU")
@pytest.mark.parametrize("runtime,module", [("tensorrt", "tensorrt"), ("tensorrt-lean", "tensorrt_lean")])
def test_runner_on_a_real_runtime_refuses_foreign_and_damaged_engines(runtime, module, tmp_path):
    """With a real TensorRT runtime on a real GPU: a manifest for another GPU is refused before
    deserializing; bytes that are no engine fail in TensorRT's deserializer with one clear sentence."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    from toolchain.fsutil import sha256_file
    from toolchain.trt.adapter import gpu_info

    mod = importlib.import_module(module)
    gpu = gpu_info(0)
    engine = tmp_path / "model.onnx_b16_gpu0_fp32.engine"
    engine.write_bytes(bytes(4096))
    manifest = {"schema": 1, "tensorrt": {"runtime": "tensorrt", "version": mod.__version__},
                "gpu": {"name": gpu.name, "cc": gpu.cc}, "precision": "fp32",
                "portability": {"version_compatible": True, "hardware_compatibility": "none"},
                "engine": {"sha256": sha256_file(engine)}}
    mpath = tmp_path / (engine.name + ".json")
    other = dict(manifest, gpu={"name": "NVIDIA A2", "cc": "8.6" if gpu.cc != "8.6" else "8.9"})
    mpath.write_text(json.dumps(other))
    with pytest.raises(FbtoolError, match="cannot run here: the engine was built for compute capability"):
        TensorRTRunner(engine, runtime=runtime)
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(FbtoolError, match=f"{runtime} .* cannot deserialize {engine.name}"):
        TensorRTRunner(engine, runtime=runtime)
