"""The engine manifest (JSON beside the engine) and the check that an engine fits the machine.

A TensorRT engine is tied to the TensorRT version, the GPU (compute capability) and, less strictly,
the GPU model and driver. The manifest records what the engine was built with; `check_compatible`
compares that with the running TensorRT/GPU before deserializing, so a foreign engine fails with a
clear sentence instead of TensorRT's "Serialization assertion ... failed" (or a crash).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import sha256_file
from .versions import parse_version

SCHEMA = 1


@dataclass(frozen=True)
class RunningInfo:
    """What a runner finds on this machine."""

    runtime: str  # "tensorrt" | "tensorrt-lean" | "tensorrt-rtx"
    version: str  # TensorRT (or TensorRT-RTX) version
    gpu_name: str | None = None
    gpu_cc: str | None = None  # "8.6"
    driver: str | None = None


def load_manifest(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FbtoolError(f"engine manifest {p} is missing",
                          "rebuild the engine with `fbtool build-engine` (it writes the manifest beside it)")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        raise FbtoolError(f"engine manifest {p} is not valid JSON", "rebuild the engine") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise FbtoolError(f"engine manifest {p} has an unknown schema", "rebuild the engine with this fbtool")
    return data


def _cc_tuple(cc: str) -> tuple[int, int]:
    v = parse_version(cc)
    return (v[0], v[1] if len(v) > 1 else 0)


def check_compatible(manifest: dict, running: RunningInfo) -> tuple[list[str], list[str]]:
    """(errors, warnings) for running the engine described by `manifest` on `running`."""
    errors: list[str] = []
    warnings: list[str] = []
    built = manifest.get("tensorrt", {})
    built_rt = built.get("runtime", "tensorrt")
    built_v = built.get("version", "?")
    portable = manifest.get("portability", {})
    version_compatible = bool(portable.get("version_compatible"))
    hw = portable.get("hardware_compatibility", "none")

    # Which runtime may load it: RTX engines only on TensorRT-RTX; the lean runtime only runs
    # version-compatible engines; the full runtime runs both kinds of TensorRT engines.
    if built_rt == "tensorrt-rtx" and running.runtime != "tensorrt-rtx":
        errors.append(f"the engine was built by TensorRT-RTX {built_v}; {running.runtime} cannot load it")
    elif built_rt == "tensorrt" and running.runtime == "tensorrt-rtx":
        errors.append(f"the engine was built by TensorRT {built_v}; TensorRT-RTX cannot load it")
    elif running.runtime == "tensorrt-lean" and not version_compatible:
        errors.append("the TensorRT lean runtime only runs version-compatible engines; this one is not "
                      "(rebuild with --version-compatible)")

    if not errors:
        try:
            same = parse_version(built_v)[:3] == parse_version(running.version)[:3]
            newer = parse_version(running.version)[:3] >= parse_version(built_v)[:3]
        except FbtoolError:
            same = newer = False
        if version_compatible:
            if not newer:
                errors.append(f"the engine needs TensorRT {built_v} or newer (version-compatible); "
                              f"this machine has {running.version}")
        elif not same:
            errors.append(f"the engine was built with {built_rt} {built_v}; this machine runs {running.version} "
                          "(engines are tied to the TensorRT version)")

    gpu = manifest.get("gpu", {})
    if built_rt == "tensorrt-rtx":
        targets = [t.upper() for t in gpu.get("targets", [])]
        if running.gpu_cc is not None:
            here = "SM" + running.gpu_cc.replace(".", "")
            ok = here in targets or ("CURRENT" in targets and gpu.get("cc") == running.gpu_cc)
            if not ok:
                errors.append(f"the TensorRT-RTX engine targets {', '.join(targets) or '?'}; this GPU is "
                              f"{running.gpu_name or '?'} ({here})")
    elif running.gpu_cc is not None and gpu.get("cc"):
        built_cc, cc = _cc_tuple(gpu["cc"]), _cc_tuple(running.gpu_cc)
        if hw == "ampere-plus":
            if cc < (8, 0):
                errors.append(f"the hardware-compatible engine needs an Ampere or newer GPU; this one is CC {running.gpu_cc}")
        elif built_cc != cc:
            errors.append(f"the engine was built for compute capability {gpu['cc']} ({gpu.get('name', '?')}); "
                          f"this GPU is {running.gpu_name or '?'} (CC {running.gpu_cc})")
        elif hw == "none" and gpu.get("name") and running.gpu_name and gpu["name"] != running.gpu_name:
            warnings.append(f"the engine was built on {gpu['name']}, this GPU is {running.gpu_name}: "
                            "TensorRT allows it, but rebuild for best speed")
    built_driver = manifest.get("driver")
    if built_driver and running.driver and built_driver != running.driver:
        warnings.append(f"driver {running.driver} differs from the build's {built_driver}")
    return errors, warnings


def verify_engine_file(manifest: dict, engine_path: str | Path) -> None:
    """The engine bytes must be the ones the manifest describes (no swapped or truncated file)."""
    want = manifest.get("engine", {}).get("sha256")
    if want and sha256_file(engine_path) != want:
        raise FbtoolError(f"{engine_path} differs from the engine its manifest describes (sha256 mismatch)",
                          "rebuild it with `fbtool build-engine`, or restore the matching manifest")


def assert_compatible(manifest: dict, running: RunningInfo, engine_path: str | Path) -> list[str]:
    """Raise on a foreign engine; return the warnings."""
    verify_engine_file(manifest, engine_path)
    errors, warnings = check_compatible(manifest, running)
    if errors:
        raise FbtoolError(f"{Path(engine_path).name} cannot run here: {errors[0]}",
                          f"rebuild it on this machine: fbtool build-engine --precision "
                          f"{manifest.get('precision', 'fp16')} -o <run folder>")
    return warnings
