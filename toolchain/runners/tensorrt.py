"""TensorRT runner: infer({input: [B,3,H,W] float32}) -> {name: float32 array}, like the other runners.

Before deserializing, the engine's manifest (written by `fbtool build-engine` beside it) is checked
against the running TensorRT and GPU (toolchain.trt.manifest.check_compatible), so a foreign
engine fails with one clear sentence. Execution uses TensorRT 10's name-based API only:
`num_io_tensors`, `get_tensor_name`, `get_tensor_mode`, `set_input_shape`, `set_tensor_address`,
`execute_async_v3` on a CUDA stream; device buffers are torch CUDA tensors (no pycuda). A batch larger
than the profile's max is run in chunks; one smaller than its min is refused.
Runtimes: "tensorrt" (full), "tensorrt-lean" (version-compatible engines only), "tensorrt-rtx".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FbtoolError
from ..trt.adapter import dims_list

# trt.DataType member name -> torch dtype name. Pure data, so it is tested without TensorRT.
TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8"}


def torch_dtype_name(trt_dtype_name: str) -> str:
    if trt_dtype_name not in TORCH_DTYPES:
        raise FbtoolError(f"engine tensor type {trt_dtype_name} has no torch equivalent here",
                          "build the engine with float32/float16 I/O (AutoCast keeps I/O types)")
    return TORCH_DTYPES[trt_dtype_name]


def chunks(batch: int, max_batch: int) -> list[tuple[int, int]]:
    """[start, stop) slices of a batch, each at most the profile's max batch."""
    return [(i, min(i + max_batch, batch)) for i in range(0, batch, max_batch)]


def running_info(backend, device: int = 0):
    from ..trt.adapter import gpu_info
    from ..trt.manifest import RunningInfo

    gpu = gpu_info(device)
    return RunningInfo(backend.runtime, backend.version, gpu.name if gpu else None, gpu.cc if gpu else None,
                       gpu.driver if gpu else None)


class TensorRTRunner:
    def __init__(self, engine_path, runtime: str | None = None, device: int = 0, manifest_path=None,
                 check: bool = True):
        from ..trt.adapter import Backend
        from ..trt.manifest import assert_compatible, load_manifest
        from ..trt.naming import manifest_path as default_manifest

        self.path = Path(engine_path)
        if not self.path.is_file():
            raise FbtoolError(f"engine {self.path} does not exist", "build it with `fbtool build-engine`")
        self.manifest = load_manifest(manifest_path or default_manifest(self.path))
        runtime = runtime or self.manifest["tensorrt"]["runtime"]
        ok, why = self.available(runtime)
        if not ok:
            raise FbtoolError(f"cannot run {self.path.name}: {why}", "`fbtool doctor` shows what is usable here")
        self.backend = Backend(runtime)
        self.warnings = assert_compatible(self.manifest, running_info(self.backend, device), self.path) if check else []

        import torch

        self.torch = torch
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)
        self.stream = torch.cuda.Stream(self.device)
        self._load()
        self.name = f"{runtime}:{self.path.name}"

    def _load(self) -> None:
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self.backend.trt
        errors: list[str] = []
        self.logger = self.backend.logger(errors)
        self.runtime = trt.Runtime(self.logger)
        if self.manifest.get("portability", {}).get("version_compatible"):
            # A version-compatible engine carries its lean runtime as host code, which a runtime refuses
            # to load unless allowed (IRuntime::setEngineHostCodeAllowed).
            self.runtime.engine_host_code_allowed = True
        engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise FbtoolError(f"{self.backend.runtime} {self.backend.version} cannot deserialize {self.path.name}: "
                              f"{(errors or ['no message'])[-1][:200]}",
                              "rebuild the engine on this machine with `fbtool build-engine`")
        self.engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise FbtoolError(f"cannot create an execution context for {self.path.name} (out of GPU memory?)")
        self.context = context
        self.inputs: list[str] = []
        self.output_names: list[str] = []
        self.dtypes: dict[str, str] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            self.dtypes[name] = torch_dtype_name(engine.get_tensor_dtype(name).name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
            else:
                self.output_names.append(name)
        if len(self.inputs) != 1:
            raise FbtoolError(f"{self.path.name} has {len(self.inputs)} inputs; the face detectors take one")
        self.input_name = self.inputs[0]
        lo, _, hi = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])

    @classmethod
    def available(cls, runtime: str = "tensorrt") -> tuple[bool, str]:
        from ..trt.adapter import MODULES

        if runtime not in MODULES:
            return False, f"unknown runtime {runtime!r}"
        module = MODULES[runtime][0]
        try:
            mod = __import__(module)
        except Exception as exc:
            return False, f"{module} does not import ({type(exc).__name__}: {str(exc)[:80]})"
        try:
            import torch
        except Exception:
            return False, "torch does not import (device buffers are torch CUDA tensors)"
        if not torch.cuda.is_available():
            return False, f"{module} {getattr(mod, '__version__', '?')} imports, but torch sees no CUDA GPU"
        return True, f"{module} {getattr(mod, '__version__', '?')}, GPU {torch.cuda.get_device_name(0)}"

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed[self.input_name] if self.input_name in feed else next(iter(feed.values()))
        x = np.ascontiguousarray(x)
        if x.shape[0] < self.min_batch:
            raise FbtoolError(f"batch {x.shape[0]} is below the engine profile's minimum {self.min_batch}",
                              "rebuild with a smaller recipe input.batch.min")
        parts = [self._infer(x[a:b]) for a, b in chunks(x.shape[0], self.max_batch)]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        torch = self.torch
        ctx = self.context
        dt = getattr(torch, self.dtypes[self.input_name])
        with torch.cuda.stream(self.stream):
            inp = torch.from_numpy(x).to(self.device, non_blocking=True).to(dt)
            if not ctx.set_input_shape(self.input_name, tuple(inp.shape)):
                raise FbtoolError(f"the engine refuses input shape {tuple(inp.shape)}",
                                  f"its profile covers batch {self.min_batch}..{self.max_batch}")
            ctx.set_tensor_address(self.input_name, int(inp.data_ptr()))
            outs: dict[str, Any] = {}
            for name in self.output_names:
                shape = tuple(dims_list(ctx.get_tensor_shape(name)))
                outs[name] = torch.empty(shape, dtype=getattr(torch, self.dtypes[name]), device=self.device)
                ctx.set_tensor_address(name, int(outs[name].data_ptr()))
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise FbtoolError(f"TensorRT failed to enqueue {self.path.name}")
        self.stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in outs.items()}
