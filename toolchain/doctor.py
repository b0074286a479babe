"""`fbtool doctor`: what is usable on this machine, and why not.

Each check imports or runs the real thing (a module import, a compiler probe, a file that must
exist) and reports one line. Stages map to the checks they need; `--require STAGE` turns that into
the exit code, so a CI job or a deployment script can ask "can build-engine run here?" first.
"""

from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import FbtoolError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str  # version when ok, the reason when not

    def to_dict(self) -> dict:
        return asdict(self)


def _import(module: str) -> tuple[object | None, str]:
    try:
        return importlib.import_module(module), ""
    except Exception as exc:  # ImportError, or a native library that fails to load
        msg = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        return None, f"{module} does not import: {msg}"


def _version(mod) -> str:
    return str(getattr(mod, "__version__", "?"))


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, f"{platform.python_version()} ({sys.executable})" if ok else
                 f"{platform.python_version()} is too old, fbtool needs >= 3.10")


def check_torch() -> list[Check]:
    torch, why = _import("torch")
    if torch is None:
        return [Check("torch", False, why), Check("torch-cuda", False, "torch is missing")]
    out = [Check("torch", True, _version(torch))]
    try:
        if torch.cuda.is_available():  # type: ignore[attr-defined]
            out.append(Check("torch-cuda", True, f"CUDA {torch.version.cuda}, "  # type: ignore[attr-defined]
                             f"{torch.cuda.get_device_name(0)}"))  # type: ignore[attr-defined]
        else:
            built = getattr(torch.version, "cuda", None)  # type: ignore[attr-defined]
            out.append(Check("torch-cuda", False, "CPU-only torch build" if not built else
                             f"torch built for CUDA {built}, but no GPU/driver is visible"))
    except Exception as exc:
        out.append(Check("torch-cuda", False, f"CUDA query failed: {str(exc)[:80]}"))
    return out


def check_onnx() -> list[Check]:
    out = []
    onnx, why = _import("onnx")
    out.append(Check("onnx", onnx is not None, _version(onnx) if onnx else why))
    ort, why = _import("onnxruntime")
    if ort is None:
        out.append(Check("onnxruntime", False, why))
    else:
        provs = ort.get_available_providers()  # type: ignore[attr-defined]
        out.append(Check("onnxruntime", True, f"{_version(ort)}, providers {', '.join(provs)}"))
    return out


def check_modelopt() -> Check:
    mo, why = _import("modelopt")
    if mo is None:
        return Check("modelopt", False, f"{why} (pip install 'fbtool[quant]')")
    q, why = _import("modelopt.onnx.quantization")
    return Check("modelopt", q is not None, f"{_version(mo)} (ONNX PTQ + AutoCast)" if q else why)


def check_tensorrt() -> list[Check]:
    out = []
    trt, why = _import("tensorrt")
    if trt is None:
        out.append(Check("tensorrt", False, f"{why}: full TensorRT (builder) is not installed; it comes from "
                                            "NVIDIA's index or the DeepStream container"))
    else:
        out.append(Check("tensorrt", hasattr(trt, "Builder"), f"{_version(trt)} (builder + runtime)"))
    lean, why = _import("tensorrt_lean")
    out.append(Check("tensorrt-lean", lean is not None,
                     f"{_version(lean)} (runs version-compatible engines only)" if lean else
                     f"{why} (pip install tensorrt-lean-cu13: wheels tensorrt_lean_cu13_libs + _bindings)"))
    rtx, why = _import("tensorrt_rtx")
    out.append(Check("tensorrt-rtx", rtx is not None,
                     f"{_version(rtx)} (builds ahead of time, on CPU; engines run on CC 8.0/8.6/8.9/12.x)" if rtx
                     else f"{why} (pip install 'fbtool[rtx]')"))
    return out


def check_gpu() -> Check:
    from .trt.adapter import gpu_info

    g = gpu_info(0)
    if g is None:
        return Check("gpu", False, "no NVIDIA GPU visible (nvidia-smi absent or lists none)")
    return Check("gpu", True, f"{g.name}, CC {g.cc}, driver {g.driver or '?'}, CUDA {g.cuda_driver or '?'}")


def check_deepstream() -> list[Check]:
    from .nvinfer.names import deepstream_root

    root = deepstream_root()
    version_file = root / "version"
    headers = root / "sources" / "includes" / "nvdsinfer_custom_impl.h"
    if version_file.is_file():
        text = version_file.read_text(errors="replace").strip().replace("\n", " ")
        ds = Check("deepstream", True, f"{text[:60]} at {root}")
    else:
        ds = Check("deepstream", False, f"not installed ({version_file} missing; DeepStream is not on PyPI: "
                                        "use NVIDIA's container or .deb)")
    hdr = Check("deepstream-headers", headers.is_file(),
                str(headers.parent) if headers.is_file() else f"{headers} missing (the parser builds against "
                                                               "fbtool's own ABI-compatible header)")
    pyds, why = _import("pyds")
    return [ds, hdr, Check("pyds", pyds is not None, _version(pyds) if pyds else why)]


def check_gstreamer() -> Check:
    tool = shutil.which("gst-inspect-1.0")
    if tool:
        try:
            v = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=20).stdout.split("\n")
            return Check("gstreamer", True, next((x for x in v if "GStreamer" in x), v[0]).strip())
        except (OSError, subprocess.SubprocessError) as exc:
            return Check("gstreamer", False, f"gst-inspect-1.0 fails: {exc}")
    gi, why = _import("gi")
    if gi is not None:
        try:
            gi.require_version("Gst", "1.0")  # type: ignore[attr-defined]
            from gi.repository import Gst  # type: ignore

            Gst.init(None)
            return Check("gstreamer", True, Gst.version_string())
        except Exception as exc:
            return Check("gstreamer", False, f"PyGObject present, Gst 1.0 missing: {str(exc)[:80]}")
    return Check("gstreamer", False, "gst-inspect-1.0 not on PATH and no PyGObject")


def _compiles(cmd: list[str], source: str, suffix: str = ".cpp") -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / f"probe{suffix}"
        src.write_text(source)
        try:
            r = subprocess.run(cmd + [str(src), "-o", str(Path(d) / "probe")], capture_output=True, text=True,
                               timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, str(exc)[:100]
        return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1][:100]


def check_compilers() -> list[Check]:
    out = []
    gxx = shutil.which("g++")
    if gxx:
        v = subprocess.run([gxx, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
        out.append(Check("g++", True, f"{v} (custom parser, libstdc++ ABI as DeepStream)"))
    else:
        out.append(Check("g++", False, "not on PATH (apt-get install g++)"))
    clang = shutil.which("clang++") or shutil.which("clang") or shutil.which("clang++-14") or shutil.which("clang-14")
    if not clang:
        out += [Check("clang", False, "not on PATH (apt-get install clang)"),
                Check("libfuzzer", False, "needs clang")]
        return out
    v = subprocess.run([clang, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    out.append(Check("clang", True, v.strip()))
    fuzz_src = ("#include <stdint.h>\n#include <stddef.h>\n"
                'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n')
    ok, why = _compiles([clang, "-fsanitize=fuzzer"], fuzz_src)
    out.append(Check("libfuzzer", ok, "clang -fsanitize=fuzzer links" if ok else
                     f"clang -fsanitize=fuzzer fails ({why}); apt-get install libclang-rt-14-dev"))
    return out


def diagnose() -> list[Check]:
    checks = [check_python(), *check_torch(), *check_onnx(), check_modelopt(), *check_tensorrt(), check_gpu(),
              *check_deepstream(), check_gstreamer(), *check_compilers()]
    return checks


# Stage -> alternatives of requirement sets: the stage can run when every check of one set is ok.
STAGES: dict[str, list[list[str]]] = {
    "export": [["torch", "onnx", "onnxruntime"]],
    "detect": [["torch", "onnxruntime"]],
    "surgery": [["onnx", "onnxruntime"]],
    "calibrate": [["onnx", "onnxruntime", "modelopt"]],
    "build-engine": [["tensorrt", "gpu"], ["tensorrt-rtx"]],
    "build-engine-tensorrt": [["tensorrt", "gpu"]],
    "build-engine-rtx": [["tensorrt-rtx"]],
    "validate": [["torch", "onnxruntime"]],
    "validate-tensorrt": [["tensorrt", "torch-cuda"], ["tensorrt-lean", "torch-cuda"]],
    "build-parser": [["g++"]],
    "fuzz": [["libfuzzer"]],
    "deepstream": [["deepstream", "gstreamer", "gpu"]],
    "blur": [["torch", "onnxruntime"]],
}


def stage_status(stage: str, checks: list[Check]) -> tuple[bool, str]:
    if stage not in STAGES:
        raise FbtoolError(f"doctor knows no stage {stage!r}", f"choose from {', '.join(STAGES)}")
    by_name = {c.name: c for c in checks}
    reasons = []
    for option in STAGES[stage]:
        missing = [n for n in option if not (n in by_name and by_name[n].ok)]
        if not missing:
            return True, "needs " + " + ".join(option)
        reasons.append(" + ".join(missing))
    return False, "missing " + " or ".join(reasons)
