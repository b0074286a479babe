"""Every engine-build decision, in plain Python: no TensorRT import, tested on any machine.

TensorRT 10 builds from a weakly typed network plus precision flags (FP16, INT8 + calibrator) or
from a strongly typed network whose precision is in the ONNX (AutoCast fp16, Q/DQ int8).
TensorRT 11 and TensorRT for RTX only take the second route: their precision flags and INT8
calibrators are gone. `plan_build` turns (what the user asked, which TensorRT, which artifacts the
run folder holds) into a `BuildPlan`; the build code only executes it. A request that the chosen
TensorRT cannot honour is refused here with a hint, never quietly changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import runfolder as RF
from ..errors import FbtoolError
from ..nvinfer.names import NETWORK_MODE
from ..runfolder import MODEL_ONNX
from ..trt.versions import hardware_compat_name, parse_version

PRECISIONS = ("fp32", "fp16", "int8", "best")
RUNTIMES = ("tensorrt", "tensorrt-rtx")
INT8_MODES = ("qdq", "implicit")
FP16_MODES = ("auto", "autocast", "flag")
SUPPORTED_TRT_MAJORS = (10, 11)

# Artifacts (stage, key) the build reads. The base (fp32) graph: surgery's output when present,
# else export's. Precision-carrying graphs come from `fbtool calibrate`.
BASE_ONNX = tuple(a.ref for a in MODEL_ONNX)
FP16_ONNX = RF.FP16_ONNX.ref
QDQ_ONNX = RF.INT8_QDQ.ref
CALIB_SET = RF.CALIB_SET.ref
CALIB_CACHE = RF.CALIB_CACHE.ref

# TensorRT for RTX compute-capability targets (engines run on these GPUs only; not on 9.0/H100).
RTX_TARGETS = ("SM75", "SM80", "SM86", "SM89", "SM120", "SM121")
RTX_DEFAULT_TARGET = "SM86"
HARDWARE_COMPAT = ("none", "ampere-plus", "same-cc")


@dataclass(frozen=True)
class Target:
    """Which TensorRT family builds (and later runs) the engine."""

    runtime: str  # "tensorrt" | "tensorrt-rtx"
    major: int  # TensorRT major (10 | 11); 11 stands for "strongly typed only" with RTX
    version: str | None = None  # the installed version, None for a plan made without TensorRT

    @property
    def strongly_typed_only(self) -> bool:
        return self.runtime == "tensorrt-rtx" or self.major >= 11

    @property
    def label(self) -> str:
        name = "TensorRT-RTX" if self.runtime == "tensorrt-rtx" else f"TensorRT {self.major}"
        return f"{name} {self.version}" if self.version and self.runtime == "tensorrt-rtx" else (
            f"TensorRT {self.version}" if self.version else name)


def make_target(runtime: str, installed_version: str | None, trt_major: int | None = None) -> Target:
    """The build target. `trt_major` overrides the installed major for decisions (and dry runs)."""
    if runtime not in RUNTIMES:
        raise FbtoolError(f"unknown runtime {runtime!r}", f"choose one of {', '.join(RUNTIMES)}")
    if runtime == "tensorrt-rtx":
        # TensorRT-RTX versions (1.x) are not TensorRT majors; it behaves like TensorRT 11 (strongly typed).
        return Target(runtime, 11, installed_version)
    major = trt_major if trt_major is not None else (parse_version(installed_version)[0] if installed_version else None)
    if major is None:
        raise FbtoolError("no TensorRT version to decide for", "install TensorRT or pass --trt-major 10|11")
    if major not in SUPPORTED_TRT_MAJORS:
        raise FbtoolError(f"TensorRT {major}.x is not supported (fbtool builds for TensorRT 10 and 11)",
                          "DeepStream 7.1-9.1 ship TensorRT 10.3-10.16: use one of those")
    if installed_version and trt_major is not None and parse_version(installed_version)[0] != trt_major:
        raise FbtoolError(f"--trt-major {trt_major} does not match the installed TensorRT {installed_version}",
                          "--trt-major only stands in for a missing TensorRT (with --dry-run)")
    return Target(runtime, major, installed_version)


@dataclass(frozen=True)
class BuildPlan:
    requested: str  # what the user asked: fp32 | fp16 | int8 | best
    precision: str  # what the engine is: fp32 | fp16 | int8 (the nvinfer engine-name suffix)
    onnx: tuple[str, str]  # (stage, artifact key) of the ONNX to parse
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # trt.BuilderFlag member names
    calibrator: bool = False  # implicit INT8: IInt8EntropyCalibrator2 over the calibration set
    route: str = ""  # one word for the manifest: fp32 | fp16-flag | fp16-autocast | int8-qdq | int8-implicit
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def network_mode(self) -> int:
        # BEST (3) is resolved to a concrete precision by plan_build because nvinfer names BEST
        # engines "..._UNKNOWN.engine" (networkMode2Str has no case for it).
        return NETWORK_MODE[self.precision]

    def to_dict(self) -> dict:
        return {"requested": self.requested, "precision": self.precision, "onnx": list(self.onnx),
                "strongly_typed": self.strongly_typed, "builder_flags": list(self.builder_flags),
                "calibrator": self.calibrator, "route": self.route, "network_mode": self.network_mode,
                "notes": list(self.notes)}


def _need(art: tuple[str, str], available: set[tuple[str, str]], why: str) -> tuple[str, str]:
    if art not in available:
        raise FbtoolError(f"{why} needs the '{art[1]}' artifact of stage '{art[0]}', which the run folder lacks",
                          f"run `fbtool {art[0]}` on this run folder first")
    return art


def base_onnx(available: set[tuple[str, str]]) -> tuple[str, str]:
    for art in BASE_ONNX:
        if art in available:
            return art
    raise FbtoolError("the run folder has no ONNX model", "run `fbtool export` (and optionally `fbtool surgery`) first")


def plan_build(precision: str, target: Target, available: set[tuple[str, str]], int8_mode: str = "qdq",
               fp16_mode: str = "auto") -> BuildPlan:
    """Decide which ONNX to parse, strong typing, builder flags and calibrator for one build."""
    if precision not in PRECISIONS:
        raise FbtoolError(f"unknown precision {precision!r}", f"choose one of {', '.join(PRECISIONS)}")
    if int8_mode not in INT8_MODES:
        raise FbtoolError(f"unknown INT8 mode {int8_mode!r}", f"choose one of {', '.join(INT8_MODES)}")
    if fp16_mode not in FP16_MODES:
        raise FbtoolError(f"unknown FP16 mode {fp16_mode!r}", f"choose one of {', '.join(FP16_MODES)}")
    strict = target.strongly_typed_only
    who = target.label
    if strict and int8_mode == "implicit" and precision in ("int8", "best"):
        raise FbtoolError(f"{who} has no implicit INT8 calibration (IInt8EntropyCalibrator2 and the INT8 "
                          "builder flag were removed)",
                          "build from the Q/DQ ONNX instead: `fbtool calibrate`, then --int8-mode qdq")
    if strict and fp16_mode == "flag" and precision in ("fp16", "best"):
        raise FbtoolError(f"{who} has no FP16 builder flag (networks are strongly typed)",
                          "build from the AutoCast fp16 ONNX: `fbtool calibrate`, then --fp16-mode autocast")

    if precision == "fp32":
        return BuildPlan("fp32", "fp32", base_onnx(available), strict, (), route="fp32")

    if precision == "fp16":
        use_autocast = strict or fp16_mode == "autocast" or (fp16_mode == "auto" and FP16_ONNX in available)
        if use_autocast:
            art = _need(FP16_ONNX, available, f"FP16 on {who}" if strict else "--fp16-mode autocast")
            return BuildPlan("fp16", "fp16", art, True, (), route="fp16-autocast")
        return BuildPlan("fp16", "fp16", base_onnx(available), False, ("FP16",), route="fp16-flag")

    if precision == "int8":
        if int8_mode == "implicit":
            if CALIB_SET not in available and CALIB_CACHE not in available:
                raise FbtoolError("implicit INT8 needs a calibration set or cache, and the run folder has neither",
                                  "run `fbtool calibrate` on this run folder first")
            # DeepStream's network-mode=1 sets the INT8 flag only; layers TensorRT cannot run in INT8
            # fall back to FP32, as in nvinfer's own build.
            return BuildPlan("int8", "int8", base_onnx(available), False, ("INT8",), calibrator=True,
                             route="int8-implicit")
        art = _need(QDQ_ONNX, available, "INT8 (Q/DQ)")
        return BuildPlan("int8", "int8", art, True, (), route="int8-qdq")

    # best: the fastest engine the run folder can give, resolved to a concrete precision.
    if QDQ_ONNX in available and int8_mode == "qdq":
        if strict:
            return BuildPlan("best", "int8", QDQ_ONNX, True, (), route="int8-qdq",
                             notes=("best -> int8 from the Q/DQ ONNX",))
        # TensorRT 10, weakly typed Q/DQ network: the flags let layers outside Q/DQ pairs run in FP16.
        return BuildPlan("best", "int8", QDQ_ONNX, False, ("FP16", "INT8"), route="int8-qdq",
                         notes=("best -> int8 (Q/DQ) with FP16 for the layers outside Q/DQ pairs",))
    if int8_mode == "implicit":
        plan = plan_build("int8", target, available, "implicit")
        return BuildPlan("best", "int8", plan.onnx, False, ("FP16", "INT8"), calibrator=True,
                         route="int8-implicit", notes=("best -> implicit int8 with FP16 fallback",))
    if FP16_ONNX in available or not strict:
        plan = plan_build("fp16", target, available, fp16_mode=fp16_mode)
        return BuildPlan("best", "fp16", plan.onnx, plan.strongly_typed, plan.builder_flags, route=plan.route,
                         notes=("best -> fp16 (no Q/DQ ONNX in the run folder)",))
    plan = plan_build("fp32", target, available)
    return BuildPlan("best", "fp32", plan.onnx, True, (), route="fp32",
                     notes=(f"best -> fp32: {who} needs the fp16 or Q/DQ ONNX from `fbtool calibrate` "
                            "for lower precision",))


# ---- optimization profile -------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def to_dict(self) -> dict:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(lo <= s <= hi for s, lo, hi in zip(shape, self.min, self.max))


def _round_to(v: float, stride: int) -> int:
    return max(stride, int(round(v / stride)) * stride)


def profile_for(recipe, onnx_dims: list[int | str] | None = None) -> Profile:
    """One optimization profile: batch min/opt/max from recipe.input.batch; H/W from the recipe,
    ranging from half to twice the recipe size (multiples of the largest anchor step) when dynamic.
    A static dimension in the ONNX wins over the recipe (TensorRT rejects a profile that contradicts it).
    """
    inp = recipe.input
    b = inp.batch
    stride = max(recipe.anchors.steps) if recipe.anchors and recipe.anchors.steps else 32
    if inp.dynamic_hw:
        h = (_round_to(inp.height / 2, stride), inp.height, _round_to(inp.height * 2, stride))
        w = (_round_to(inp.width / 2, stride), inp.width, _round_to(inp.width * 2, stride))
    else:
        h, w = (inp.height,) * 3, (inp.width,) * 3
    lo = [b.min, inp.channels, h[0], w[0]]
    mid = [b.opt, inp.channels, h[1], w[1]]
    hi = [b.max, inp.channels, h[2], w[2]]
    if onnx_dims is not None:
        if len(onnx_dims) != 4:
            raise FbtoolError(f"the ONNX input '{inp.name}' has {len(onnx_dims)} dimensions, expected 4 (NCHW)",
                              "export the model again with `fbtool export`")
        for i, d in enumerate(onnx_dims):
            if isinstance(d, int) and d > 0:
                if i > 0 and not inp.dynamic_hw and d != hi[i]:
                    raise FbtoolError(f"the ONNX input '{inp.name}' has dimension {i} = {d}, the recipe says {hi[i]}",
                                      "the ONNX was made from another recipe: export it again")
                lo[i] = mid[i] = hi[i] = d
    return Profile(inp.name, tuple(lo), tuple(mid), tuple(hi))


def check_portability(target: Target, plan: BuildPlan, version_compatible: bool, hardware_compat: str) -> None:
    """Refuse portability options the target or the plan cannot honour."""
    hardware_compat_name(hardware_compat)
    if target.runtime == "tensorrt-rtx" and (version_compatible or hardware_compat != "none"):
        raise FbtoolError("TensorRT-RTX engines are made portable by their compute-capability targets",
                          "drop --version-compatible/--hardware-compat and pass --rtx-target SM80,SM86,...")
    if plan.calibrator and (version_compatible or hardware_compat != "none"):
        raise FbtoolError("implicit INT8 calibration cannot be combined with version/hardware-compatible builds",
                          "use --int8-mode qdq for a portable INT8 engine")


def rtx_targets(requested: tuple[str, ...], gpu_cc: str | None) -> tuple[str, ...]:
    """TensorRT-RTX compute-capability targets: as asked, else the visible GPU's when TensorRT-RTX
    supports it, else SM86 (a CPU-only build; an H100, CC 9.0, cannot run TensorRT-RTX engines)."""
    if requested:
        out = []
        for t in requested:
            name = t.strip().upper().replace(".", "")
            name = name if name.startswith("SM") or name == "CURRENT" else f"SM{name}"
            if name not in RTX_TARGETS and name != "CURRENT":
                raise FbtoolError(f"TensorRT-RTX cannot target {t!r}", f"choose from {', '.join(RTX_TARGETS)}")
            out.append(name)
        return tuple(dict.fromkeys(out))
    if gpu_cc is not None and f"SM{gpu_cc.replace('.', '')}" in RTX_TARGETS:
        return (f"SM{gpu_cc.replace('.', '')}",)
    return (RTX_DEFAULT_TARGET,)
