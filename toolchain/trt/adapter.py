"""The one place where TensorRT, TensorRT-RTX and the TensorRT lean runtime differ.

All three expose the same Python API shape (Builder, OnnxParser, IBuilderConfig, Runtime,
ICudaEngine, IExecutionContext), so build.py and runners/tensorrt.py are written once against
TensorRT 10's API (and type-checked against its stubs). What differs lives here:
- the module name (`tensorrt`, `tensorrt_rtx`, `tensorrt_lean`) and its install hint;
- the build target: TensorRT builds for the GPU it runs on, optionally hardware-compatible
  (`config.hardware_compatibility_level`) and version-compatible (`BuilderFlag.VERSION_COMPATIBLE`,
  runnable by the lean runtime); TensorRT-RTX builds ahead of time, on a CPU if need be, for a list
  of compute capabilities (`config.num_compute_capabilities`, `config.set_compute_capability`);
- the timing cache, a no-op (with a DeprecationWarning) in TensorRT-RTX, so it is skipped there.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from ..errors import FbtoolError, require

MODULES = {
    "tensorrt": ("tensorrt", "pip install 'fbtool[tensorrt]' on a machine with an NVIDIA GPU "
                 "(TensorRT 10.x from NVIDIA's index, or the DeepStream container); `fbtool doctor` says what is missing"),
    "tensorrt-rtx": ("tensorrt_rtx", "pip install 'fbtool[rtx]' (tensorrt-rtx; builds on a CPU)"),
    "tensorrt-lean": ("tensorrt_lean", "pip install tensorrt-lean-cu13, which pulls the PyPI wheels tensorrt_lean_cu13_libs + _bindings; runs version-compatible engines"),
}


class Backend:
    """A loaded TensorRT-family module plus the few calls that differ between the families."""

    def __init__(self, runtime: str, module: Any | None = None):
        if runtime not in MODULES:
            raise FbtoolError(f"unknown TensorRT runtime {runtime!r}", f"choose one of {', '.join(MODULES)}")
        name, hint = MODULES[runtime]
        self.runtime = runtime
        self.trt: Any = module if module is not None else require(name, f"the {runtime} engine path", hint)

    @property
    def version(self) -> str:
        return str(getattr(self.trt, "__version__", "?"))

    @property
    def is_rtx(self) -> bool:
        return self.runtime == "tensorrt-rtx"

    def logger(self, collect: list[str]) -> Any:
        """A logger that keeps error messages, so a failed parse/build says why in one line."""
        trt = self.trt

        class _Logger(trt.ILogger):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if int(severity) <= int(trt.ILogger.Severity.ERROR):  # INTERNAL_ERROR=0, ERROR=1
                    collect.append(str(msg))

        return _Logger()

    def network_flags(self, strongly_typed: bool) -> int:
        # TensorRT 11 and TensorRT-RTX are strongly typed whatever the flag; passing the flag where it
        # exists keeps TensorRT 10's strongly typed builds explicit.
        flag = getattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return (1 << int(flag)) if strongly_typed and flag is not None else 0

    @property
    def timing_cache_supported(self) -> bool:
        return not self.is_rtx

    def apply_target(self, config: Any, targets: tuple[str, ...], version_compatible: bool,
                     hardware_compat: str) -> dict:
        """Set what the engine may run on; returns what was set, for the manifest."""
        trt = self.trt
        if self.is_rtx:
            config.num_compute_capabilities = len(targets)
            for i, t in enumerate(targets):
                if not config.set_compute_capability(getattr(trt.ComputeCapability, t), i):
                    raise FbtoolError(f"TensorRT-RTX refused compute capability target {t}")
            return {"targets": list(targets)}
        from .versions import hardware_compat_name

        if hardware_compat != "none":
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                          hardware_compat_name(hardware_compat))
        if version_compatible:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        return {"version_compatible": version_compatible, "hardware_compatibility": hardware_compat}


def dims_list(dims: Any) -> list[int]:
    """trt.Dims -> list of ints (Dims is indexable; the stubs do not declare it iterable)."""
    return [int(dims[i]) for i in range(len(dims))]


def load_backend(runtime: str) -> Backend:
    return Backend(runtime)


@dataclass(frozen=True)
class GpuInfo:
    name: str | None = None
    cc: str | None = None  # "8.6"
    driver: str | None = None
    cuda_driver: str | None = None  # highest CUDA version the driver supports
    index: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "cc": self.cc, "driver": self.driver, "cuda_driver": self.cuda_driver,
                "index": self.index}


def parse_nvidia_smi(query_csv: str, banner: str = "", index: int = 0) -> GpuInfo | None:
    """GpuInfo from `nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader`
    and (for the CUDA version the driver supports) plain `nvidia-smi`'s banner."""
    lines = [ln for ln in query_csv.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    parts = [p.strip() for p in lines[0].split(",")]
    if len(parts) < 3:
        return None
    cuda = banner.split("CUDA Version:")[1].split()[0] if "CUDA Version:" in banner else None
    return GpuInfo(parts[0], parts[1], parts[2], cuda, index)


def gpu_info(index: int = 0) -> GpuInfo | None:
    """The GPU `index` as nvidia-smi reports it (no CUDA context, no heavy import), else as torch sees
    it; None without a GPU."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, f"--id={index}", "--query-gpu=name,compute_cap,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            banner = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
            info = parse_nvidia_smi(out.stdout, banner, index) if out.returncode == 0 else None
            if info is not None:
                return info
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(index)
            return GpuInfo(torch.cuda.get_device_name(index), f"{major}.{minor}", None, None, index)
    except Exception:  # torch without CUDA, or a broken driver: no GPU for us
        pass
    return None


def cuda_runtime_version() -> str | None:
    """CUDA runtime version through cuda-python, else torch's build; None when neither knows."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6

        err, v = cudart.cudaRuntimeGetVersion()
        if int(err) == 0:
            return f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:
        pass
    try:
        import torch

        return torch.version.cuda
    except Exception:
        return None
