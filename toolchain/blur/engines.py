"""Backends for the blur job: which stages run, and the model/runner behind the infer stage.

ort, torch (cpu) and the TensorRT / nvinfer-emulation runners use the host engine (numpy between
stages); torch on CUDA uses the CUDA engine (tensors stay on the GPU). Each backend is created
here, once, and reports a clear error where it cannot run on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FbtoolError, MissingDependency
from .ops import CUDA_BLUR_MODES, DEFAULT_CUDA_BLUR

BACKENDS = ("ort", "torch", "tensorrt", "nvinfer")


@dataclass
class Engine:
    backend: str
    device: str
    name: str
    runner: Any = None  # host engine: runner.infer(feed) -> dict of numpy arrays
    model: Any = None  # tensor engine: the torch module (on the GPU; on the CPU only for tests)
    dtype: Any = None
    batch: int = 4
    emulator: Any = None  # nvinfer backend: toolchain.nvinfer.emulation.NvInferEmulator (frames in, objects out)
    cuda_blur: str = DEFAULT_CUDA_BLUR  # tensor engine: which torch blur (blur.ops.CUDA_BLUR_MODES)
    inputs: dict = field(default_factory=dict)  # files the engine reads: no output may overwrite them

    @property
    def cuda(self) -> bool:
        return self.model is not None and self.tensor_device == "cuda"

    @property
    def tensor_device(self) -> str:
        return next(self.model.parameters()).device.type if self.model is not None else "cpu"


def _onnx_path(onnx, run_dir) -> Path:
    if onnx:
        return Path(onnx)
    from ..runfolder import EXPORT_ONNX, RunFolder

    return RunFolder(run_dir or "runs/default").get(EXPORT_ONNX, required=True)


def make_engine(recipe, backend: str = "ort", device: str = "cpu", onnx=None, run_dir=None, engine_path=None,
                weights=None, batch: int | None = None, precision: str = "fp32", threads: int | None = None,
                tensor_path: bool = False, cuda_blur: str = DEFAULT_CUDA_BLUR, fp32_heads: bool = True) -> Engine:
    """The backend's engine. `tensor_path=True` with torch on the CPU runs the CUDA engine's stages on
    CPU tensors (tests use it to exercise that code without a GPU)."""
    if backend not in BACKENDS:
        raise FbtoolError(f"unknown backend {backend!r}", f"choose one of {', '.join(BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise FbtoolError(f"unknown device {device!r}", "choose cpu or cuda")
    if cuda_blur not in CUDA_BLUR_MODES:
        raise FbtoolError(f"unknown CUDA blur mode {cuda_blur!r}", f"choose one of {', '.join(CUDA_BLUR_MODES)}")
    from ..runners import open_runner

    if backend == "ort":
        path = _onnx_path(onnx, run_dir)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else None
        r = open_runner("onnxruntime", path, providers=providers, threads=threads)
        return Engine(backend, device, r.name, runner=r, batch=batch or 4, inputs={"--onnx": path})
    if backend == "torch":
        if device == "cpu" and tensor_path:
            from ..models import build_model

            model = build_model(recipe, weights).eval()
            return Engine(backend, device, "torch-cpu-tensor-path", model=model, dtype=None, batch=batch or 4,
                          cuda_blur=cuda_blur)
        if device == "cpu":
            r = open_runner("torch", recipe=recipe, weights=weights)
            return Engine(backend, device, r.name, runner=r, batch=batch or 4)
        import torch

        if not torch.cuda.is_available():
            raise FbtoolError("--device cuda but torch sees no CUDA GPU",
                              "run on a GPU machine, or use --device cpu")
        from ..models import build_model

        # No cudnn.benchmark: PyTorch keeps cuDNN's autotune cache per thread, so every pipeline run (new
        # stage threads) re-benchmarked every convolution inside the timed run (scripts/gpu_pipeline_profile.py
        # on the H100: ~450 cudaDeviceSynchronize calls and trial kernels in 8 batches).
        torch.backends.cudnn.benchmark = False
        from .precision import fuse_conv_bn, heads_fp32

        model = fuse_conv_bn(build_model(recipe, weights).eval()).to("cuda")  # fp16 needs it (precision.py)
        dtype = torch.float32
        if precision == "fp16":
            model = model.half()
            if fp32_heads:  # fp16 ties between overlapping candidates' scores (precision.heads_fp32)
                model = heads_fp32(model)
            dtype = torch.float16
        model = model.to(memory_format=torch.channels_last)
        return Engine(backend, device, f"torch-cuda-{precision}", model=model, dtype=dtype, batch=batch or 32,
                      cuda_blur=cuda_blur)
    if backend == "tensorrt":
        from ..runners import available

        ok, why = available("tensorrt")
        if not ok:
            raise MissingDependency("tensorrt", f"the TensorRT backend ({why})",
                                    "run on a machine with TensorRT and a CUDA GPU; use --backend ort or torch here")
        path = engine_path
        if path is None:
            from ..runfolder import ENGINE, RunFolder

            path = RunFolder(run_dir or "runs/default").get(ENGINE, required=True)
        r = open_runner("tensorrt", path)
        return Engine(backend, device, r.name, runner=r, batch=batch or 4, inputs={"--engine": path})
    from ..nvinfer import emulation as emu
    from ..runfolder import INFER_CONFIG, RunFolder

    config = RunFolder(run_dir or "runs/default").get(INFER_CONFIG, required=True)
    # Never the Python stand-in: this backend answers "what would DeepStream do", which needs the very
    # library the config names (a failed dlopen or a missing library is an error, not a fallback).
    try:
        parser = emu.NvInferEmulator.harness_for(emu.read_config(config))
    except FbtoolError as exc:
        raise FbtoolError(f"the nvinfer backend cannot load the config's parser: {exc.message}",
                          "run `fbtool build-parser` then `fbtool deepstream` into the run folder, "
                          "or use --backend ort") from None
    e = emu.NvInferEmulator(config, parser=parser)
    return Engine(backend, device, "nvinfer-emulation (compiled parser)", emulator=e, batch=batch or e.batch,
                  inputs={"the nvinfer config": config})
