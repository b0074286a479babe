"""`fbtool build-engine`: ONNX -> serialized TensorRT (or TensorRT-RTX) engine + manifest.

The decisions (which ONNX, strong typing, flags, profile, name, target) come from decisions.py and
naming.py; this module executes them with thin calls to TensorRT's documented Python API
(Builder, OnnxParser, IBuilderConfig, build_serialized_network). The same code builds with
TensorRT 10/11 and with TensorRT-RTX: the differences sit in adapter.Backend. The calls are
type-checked against the TensorRT 10 stubs (scripts/typecheck_trt.sh): inside each function the
module is bound as `import tensorrt as trt` for the type checker and as the loaded backend at run time.

Nothing is written unless the build succeeds: engine, manifest and timing cache are renamed into
place atomically, and the run folder's manifest records stage "build-engine" last.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import FbtoolError
from ..fsutil import sha256_file, write_bytes, write_json
from ..recipe import Recipe
from ..runfolder import RunFolder, fingerprint
from ..trt.adapter import Backend, GpuInfo, cuda_runtime_version, dims_list, gpu_info, load_backend
from ..trt.manifest import SCHEMA
from ..trt.naming import engine_file_name, manifest_path, rtx_engine_file_name
from . import decisions as D

STAGE = "build-engine"


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    runtime: str = "tensorrt"
    trt_major: int | None = None  # stands in for the installed TensorRT's major in decisions
    int8_mode: str = "qdq"  # qdq | implicit (TensorRT 10 only)
    fp16_mode: str = "auto"  # auto | autocast | flag (flag: TensorRT 10 only)
    workspace_mb: int = 1024
    opt_level: int = 3  # builder_optimization_level 0..5
    version_compatible: bool = False
    hardware_compat: str = "none"  # none | ampere-plus | same-cc
    gpu_id: int = 0
    rtx_targets: tuple[str, ...] = ()
    timing_cache: str | None = None
    dry_run: bool = False  # decide and print; no TensorRT needed, nothing written


def available_artifacts(run: RunFolder) -> set[tuple[str, str]]:
    out = set()
    for stage, entry in run.data.get("stages", {}).items():
        for key in entry.get("artifacts", {}):
            if run.artifact(stage, key, required=False) is not None:
                out.add((stage, key))
    return out


def onnx_input_dims(onnx_path: Path, input_name: str) -> list[int | str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name == input_name:
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                    for d in inp.type.tensor_type.shape.dim]
    names = [i.name for i in model.graph.input]
    raise FbtoolError(f"{onnx_path.name} has no input named '{input_name}' (it has {names})",
                      "the recipe's input.name must match the ONNX: export it again")


def default_timing_cache(runtime: str, version: str, gpu: GpuInfo | None) -> Path:
    root = Path(os.environ.get("FBTOOL_CACHE", Path.home() / ".cache" / "fbtool"))
    cc = f"sm{gpu.cc.replace('.', '')}" if gpu and gpu.cc else "nogpu"
    # One cache per TensorRT version and GPU: TensorRT rejects a cache from another one.
    return root / "trt-timing" / f"{runtime}-{version}-{cc}.cache"


def _build(backend: Backend, onnx_path: Path, plan: D.BuildPlan, profile: D.Profile, opts: BuildOptions,
           targets: tuple[str, ...], timing_cache: Path | None, calibrator: Any) -> tuple[bytes, list[dict], dict,
                                                                                         bytes | None]:
    """Parse, configure and build. Returns (engine bytes, I/O tensors, target info, timing cache bytes)."""
    if TYPE_CHECKING:
        import tensorrt as trt  # the type checker sees TensorRT 10's API (stubs)
    else:
        trt = backend.trt  # tensorrt or tensorrt_rtx at run time
    errors: list[str] = []
    logger = backend.logger(errors)
    builder = trt.Builder(logger)
    network = builder.create_network(backend.network_flags(plan.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        msgs = [parser.get_error(i).desc() for i in range(parser.num_errors)] or errors or ["unknown error"]
        raise FbtoolError(f"{backend.runtime} {backend.version} cannot parse {onnx_path.name}: {msgs[0][:200]}",
                          "run `fbtool surgery` (TensorRT hygiene passes), or export with another --opset")
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    if profile.input not in [t.name for t in inputs]:
        raise FbtoolError(f"{onnx_path.name} has no input '{profile.input}' after parsing",
                          "the recipe's input.name must match the ONNX")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    config.builder_optimization_level = opts.opt_level
    for flag in plan.builder_flags:  # only ever non-empty on TensorRT 10 (decisions.plan_build)
        if flag == "FP16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif flag == "INT8":
            config.set_flag(trt.BuilderFlag.INT8)
        else:
            raise FbtoolError(f"unknown builder flag {flag!r} in the build plan")
    prof = builder.create_optimization_profile()
    prof.set_shape(profile.input, trt.Dims(list(profile.min)), trt.Dims(list(profile.opt)), trt.Dims(list(profile.max)))
    config.add_optimization_profile(prof)
    target_info = backend.apply_target(config, targets, opts.version_compatible, opts.hardware_compat)

    cache = None
    if timing_cache is not None and backend.timing_cache_supported:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        # ignore_mismatch=False: a cache from another TensorRT/GPU (or a damaged file) is refused and
        # replaced by a fresh one, never half-used.
        if cache is None or not config.set_timing_cache(cache, False):
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        config.set_calibration_profile(prof)  # dynamic shapes: calibrate at the profile's opt shape

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = errors[-1] if errors else "no message from TensorRT"
        raise FbtoolError(f"{backend.runtime} {backend.version} failed to build the engine: {why[:200]}",
                          "rerun with -v; try a larger --workspace-mb or --opt-level 0")
    io = [{"name": t.name, "mode": "input", "dtype": t.dtype.name, "shape": dims_list(t.shape)} for t in inputs]
    io += [{"name": t.name, "mode": "output", "dtype": t.dtype.name, "shape": dims_list(t.shape)} for t in outputs]
    cache_blob = None
    if cache is not None:
        cache_blob = bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized)), io, target_info, cache_blob


def prepare(recipe: Recipe, out: str | Path, opts: BuildOptions, backend: Backend | None) -> dict:
    """Every decision for this build, without building: plan, profile, ONNX, engine path, target."""
    run = RunFolder(out)
    if not run.path.is_file():
        raise FbtoolError(f"{run.root} is not a run folder (no manifest.json)", f"run `fbtool export -o {run.root}` first")
    version = backend.version if backend else None
    target = D.make_target(opts.runtime, version, opts.trt_major)
    plan = D.plan_build(opts.precision, target, available_artifacts(run), opts.int8_mode, opts.fp16_mode)
    D.check_portability(target, plan, opts.version_compatible, opts.hardware_compat)
    if not 0 <= opts.opt_level <= 5:
        raise FbtoolError(f"--opt-level must be 0..5, got {opts.opt_level}")
    if opts.workspace_mb < 1:
        raise FbtoolError(f"--workspace-mb must be >= 1, got {opts.workspace_mb}")
    onnx_path = run.artifact(*plan.onnx)
    if onnx_path is None:  # required=True raises first; this narrows the type
        raise FbtoolError(f"no '{plan.onnx[1]}' artifact from stage '{plan.onnx[0]}'")
    profile = D.profile_for(recipe, onnx_input_dims(onnx_path, recipe.input.name))
    gpu = gpu_info(opts.gpu_id) if not opts.dry_run else None
    if opts.runtime == "tensorrt-rtx":
        targets = D.rtx_targets(opts.rtx_targets, gpu.cc if gpu else None)
        name = rtx_engine_file_name(onnx_path.name, profile.max_batch, plan.precision, targets)
    else:
        if opts.rtx_targets:
            raise FbtoolError("--rtx-target applies to --runtime tensorrt-rtx only",
                              "TensorRT builds for the GPU it runs on (see --hardware-compat)")
        if gpu is None and not opts.dry_run:
            raise FbtoolError(f"TensorRT builds engines for the GPU it runs on, and GPU {opts.gpu_id} is not visible",
                              "run on the deployment GPU (nvidia-smi must list it), or use --runtime tensorrt-rtx")
        targets = ()
        name = engine_file_name(onnx_path.name, profile.max_batch, plan.precision, opts.gpu_id)
    return {"run": run, "target": target, "plan": plan, "onnx": onnx_path, "profile": profile, "gpu": gpu,
            "targets": targets, "engine": onnx_path.parent / name}


def build_engine(recipe: Recipe, out: str | Path, opts: BuildOptions, backend: Backend | None = None) -> dict:
    """Build (or, with dry_run, only plan) the engine for `recipe` in run folder `out`."""
    if backend is None and not opts.dry_run:
        backend = load_backend(opts.runtime)  # MissingDependency: one line + install hint, nothing written
    p = prepare(recipe, out, opts, backend)
    plan: D.BuildPlan = p["plan"]
    profile: D.Profile = p["profile"]
    info: dict[str, Any] = {"runtime": opts.runtime, "plan": plan.to_dict(), "profile": profile.to_dict(),
                            "onnx": str(p["onnx"]), "engine": str(p["engine"]), "targets": list(p["targets"]),
                            "target": p["target"].label}
    if opts.dry_run or backend is None:
        info["dry_run"] = True
        return info

    gpu: GpuInfo | None = p["gpu"]
    cache_path = None
    if backend.timing_cache_supported:
        cache_path = Path(opts.timing_cache) if opts.timing_cache else default_timing_cache(opts.runtime,
                                                                                           backend.version, gpu)
    calibrator = None
    if plan.calibrator:
        from .calibrator import make_calibrator

        run: RunFolder = p["run"]
        calibrator = make_calibrator(backend, recipe, run, profile, cache_target=run.root / "calib" / "calib_cache.txt")

    t0 = time.perf_counter()
    blob, io, target_info, cache_blob = _build(backend, p["onnx"], plan, profile, opts, p["targets"], cache_path,
                                               calibrator)
    seconds = time.perf_counter() - t0

    engine_path: Path = p["engine"]
    write_bytes(engine_path, blob)
    try:
        if cache_blob is not None and cache_path is not None:
            write_bytes(cache_path, cache_blob)
        manifest = engine_manifest(recipe, backend, opts, plan, profile, io, p["onnx"], engine_path, gpu,
                                   target_info, seconds, cache_path if cache_blob else None)
        mpath = manifest_path(engine_path)
        write_json(mpath, manifest)
    except BaseException:
        engine_path.unlink(missing_ok=True)  # no engine without its manifest
        raise
    info.update({"seconds": round(seconds, 3), "bytes": len(blob), "manifest": str(mpath), "io": io,
                 "precision": plan.precision})
    p["run"].record(STAGE, {"engine": engine_path, "engine_manifest": mpath},
                    {k: info[k] for k in ("runtime", "precision", "plan", "profile", "seconds", "bytes", "targets",
                                          "target")},
                    inputs=fingerprint(recipe.hash, p["onnx"], asdict(opts), backend.version), recipe=recipe)
    return info


def engine_manifest(recipe: Recipe, backend: Backend, opts: BuildOptions, plan: D.BuildPlan, profile: D.Profile,
                    io: list[dict], onnx_path: Path, engine_path: Path, gpu: GpuInfo | None, target_info: dict,
                    seconds: float, timing_cache: Path | None) -> dict:
    gpu_d: dict[str, Any] = gpu.to_dict() if gpu else {"name": None, "cc": None}
    if backend.is_rtx:
        gpu_d["targets"] = target_info.get("targets", [])
    return {
        "schema": SCHEMA,
        "tensorrt": {"runtime": backend.runtime, "version": backend.version,
                     "major": D.make_target(opts.runtime, backend.version).major,
                     "onnx_parser": _parser_version(backend)},
        "cuda": {"runtime": cuda_runtime_version(), "driver_supports": gpu.cuda_driver if gpu else None},
        "driver": gpu.driver if gpu else None,
        "gpu": gpu_d,
        "precision": plan.precision,
        "network_mode": plan.network_mode,
        "plan": plan.to_dict(),
        "profile": profile.to_dict(),
        "io": io,
        "portability": {"version_compatible": opts.version_compatible,
                        "hardware_compatibility": opts.hardware_compat,
                        "lean_runtime": opts.version_compatible},
        "build": {"seconds": round(seconds, 3), "workspace_mb": opts.workspace_mb,
                  "optimization_level": opts.opt_level,
                  "timing_cache": str(timing_cache) if timing_cache else None,
                  "host": platform.node(), "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "fbtool": __version__},
        "onnx": {"file": onnx_path.name, "sha256": sha256_file(onnx_path)},
        "engine": {"file": engine_path.name, "sha256": sha256_file(engine_path),
                   "bytes": engine_path.stat().st_size},
        "recipe": {"name": recipe.name, "hash": recipe.hash},
    }


def _parser_version(backend: Backend) -> int | None:
    fn = getattr(backend.trt, "get_nv_onnx_parser_version", None)
    try:
        return int(fn()) if fn else None
    except Exception:
        return None
