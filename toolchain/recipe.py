"""Recipes: one YAML file per model, loaded into frozen dataclasses and validated on load.

A recipe is the single source of truth for a model: weights, input geometry, preprocessing,
anchors/decode, thresholds, output names and accuracy tolerances. Every later artifact (ONNX
metadata, nvinfer config, parser parameters) is derived from it, never typed twice.
A bad field raises FbtoolError naming the field (e.g. `preprocess.mean`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import FbtoolError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
DEFAULT_RECIPE = "retinaface_mnet025"


@dataclass(frozen=True)
class Weights:
    file: str
    sha256: str
    url: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class BatchRange:
    min: int = 1
    opt: int = 4
    max: int = 16


@dataclass(frozen=True)
class InputSpec:
    name: str
    width: int
    height: int
    channels: int = 3
    batch: BatchRange = BatchRange()
    dynamic_hw: bool = False


@dataclass(frozen=True)
class Preprocess:
    """nvinfer's formula: y = scale * (x - mean[c]) on the frame scaled (letterboxed) to the input."""

    color: str  # "bgr" | "rgb"
    mean: tuple[float, float, float]
    scale: float = 1.0
    letterbox: bool = True  # nvinfer maintain-aspect-ratio
    symmetric_padding: bool = False  # pad bottom/right when False, centred when True
    interpolation: str = "bilinear"  # nvinfer scaling-filter 1


@dataclass(frozen=True)
class Anchors:
    steps: tuple[int, ...]
    min_sizes: tuple[tuple[float, ...], ...]
    variance: tuple[float, float] = (0.1, 0.2)
    clip: bool = False


@dataclass(frozen=True)
class Outputs:
    """Stable ONNX output names. Raw heads: deltas, probabilities, landmark deltas."""

    boxes: str = "loc"
    scores: str = "conf"
    landmarks: str | None = "landmarks"
    num_landmarks: int = 5

    @property
    def names(self) -> list[str]:
        """The model's outputs in the order the network returns them."""
        return [self.boxes, self.scores] + ([self.landmarks] if self.landmarks else [])


@dataclass(frozen=True)
class Thresholds:
    score: float = 0.5  # nvinfer pre-cluster-threshold
    nms_iou: float = 0.4  # nvinfer nms-iou-threshold
    pre_nms_top_k: int = 5000
    top_k: int = 750  # nvinfer topk (after NMS)


@dataclass(frozen=True)
class MaskSpec:
    """Per-face contour mask: an ellipse oriented by the eye line, as a probability map."""

    resolution: int = 32  # parser mask is resolution x resolution over the face box
    feather: float = 0.15  # width of the soft edge, in units of the ellipse radius
    max_tilt_deg: float = 45.0


@dataclass(frozen=True)
class Tolerances:
    export_abs: float = 1e-4
    tensor_abs: float = 1e-3  # fp32 candidates vs PyTorch, per raw output, in validate
    detection_f1: float = 0.99
    mean_iou: float = 0.95
    int8_f1: float = 0.97
    int8_mean_iou: float = 0.90
    fp16_f1: float = 0.995
    box_px: float = 0.5
    mask_iou: float = 0.95
    landmark_px: float = 2.0


@dataclass(frozen=True)
class Surgery:
    """Graph surgery (toolchain/surgery): ordered pass names and the decode-in-graph options."""

    passes: tuple[str, ...] = ("sanitize", "trt_hygiene", "io_names")
    decode: bool = False  # True: append anchor decode, outputs det_boxes/det_scores/det_landmarks
    top_k: int = 0  # decoded layout only: keep the K best anchors (0 = all N); TensorRT needs K < 3840
    score_prefilter: float = 0.0  # decoded layout only: scores <= this become 0 (0 = off)


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    variant: str
    weights: Weights
    input: InputSpec
    preprocess: Preprocess
    anchors: Anchors
    outputs: Outputs = Outputs()
    thresholds: Thresholds = Thresholds()
    mask: MaskSpec = MaskSpec()
    tolerances: Tolerances = Tolerances()
    surgery: Surgery = Surgery()
    labels: tuple[str, ...] = ("face",)
    opset: int = 17
    validation_media: tuple[str, ...] = ()
    calibration_media: tuple[str, ...] = ()
    source: str | None = None  # path the recipe was loaded from

    @property
    def has_landmarks(self) -> bool:
        return self.outputs.landmarks is not None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d

    @property
    def hash(self) -> str:
        """Content hash of everything that defines the model's behaviour (not where it was loaded from)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def preprocess_hash(self) -> str:
        """Hash of what decides the input tensor: calibration sets are tied to it."""
        blob = json.dumps(
            {"pre": dataclasses.asdict(self.preprocess), "w": self.input.width, "h": self.input.height},
            sort_keys=True,
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_SECTIONS = {
    "weights": Weights,
    "input": InputSpec,
    "preprocess": Preprocess,
    "anchors": Anchors,
    "outputs": Outputs,
    "thresholds": Thresholds,
    "mask": MaskSpec,
    "tolerances": Tolerances,
    "surgery": Surgery,
}


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise FbtoolError(f"recipe field '{where}' must be a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise FbtoolError(
            f"recipe field '{where}.{unknown[0]}' is not known",
            f"allowed in '{where}': {', '.join(sorted(names))}",
        )
    kwargs = {}
    for key, value in data.items():
        if cls is InputSpec and key == "batch":
            value = _build(BatchRange, value, f"{where}.batch")
        kwargs[key] = _coerce(names[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [n for n, f in names.items() if n not in data and f.default is dataclasses.MISSING]
        raise FbtoolError(f"recipe field '{where}.{missing[0] if missing else '?'}' is required") from exc


def _coerce(f: dataclasses.Field, value: Any, where: str):
    t = str(f.type)
    if value is None:
        if "None" in t:
            return None
        raise FbtoolError(f"recipe field '{where}' must not be empty")
    try:
        if t.startswith("tuple[tuple"):
            return tuple(tuple(float(x) for x in row) for row in value)
        if t.startswith("tuple[int"):
            return tuple(int(x) for x in value)
        if t.startswith("tuple[float"):
            return tuple(float(x) for x in value)
        if t.startswith("tuple[str"):
            return tuple(str(x) for x in value)
        if t == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if t == "int":
            if isinstance(value, bool) or int(value) != value:
                raise ValueError
            return int(value)
        if t == "float":
            return float(value)
        if t.startswith("str"):
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise FbtoolError(f"recipe field '{where}' has a bad value {value!r}", f"expected {t}") from None
    return value


def _check(r: Recipe) -> None:
    def bad(field_name: str, why: str):
        raise FbtoolError(f"recipe field '{field_name}' {why}", f"fix it in {r.source or 'the recipe'}")

    if r.preprocess.color not in ("bgr", "rgb"):
        bad("preprocess.color", f"must be bgr or rgb, got {r.preprocess.color!r}")
    if len(r.preprocess.mean) != 3:
        bad("preprocess.mean", "must have 3 values (one per channel)")
    if r.preprocess.scale <= 0:
        bad("preprocess.scale", "must be > 0")
    if r.preprocess.interpolation not in ("nearest", "bilinear"):
        bad("preprocess.interpolation", "must be nearest or bilinear")
    stride = max(r.anchors.steps) if r.anchors.steps else 1
    for dim in ("width", "height"):
        v = getattr(r.input, dim)
        if v <= 0 or v % 32:
            bad(f"input.{dim}", f"must be a positive multiple of 32, got {v}")
    b = r.input.batch
    if not (1 <= b.min <= b.opt <= b.max):
        bad("input.batch", f"needs 1 <= min <= opt <= max, got {b.min}/{b.opt}/{b.max}")
    if len(r.anchors.steps) != len(r.anchors.min_sizes):
        bad("anchors.min_sizes", "needs one list per entry of anchors.steps")
    if stride <= 0:
        bad("anchors.steps", "must be positive")
    if len(r.anchors.variance) != 2:
        bad("anchors.variance", "must have 2 values")
    if not 0 < r.thresholds.score < 1:
        bad("thresholds.score", "must be in (0, 1)")
    if not 0 < r.thresholds.nms_iou <= 1:
        bad("thresholds.nms_iou", "must be in (0, 1]")
    if r.mask.resolution < 4 or r.mask.resolution > 512:
        bad("mask.resolution", "must be in [4, 512]")
    if not r.labels:
        bad("labels", "must name at least one class")
    if r.surgery.top_k < 0:
        bad("surgery.top_k", "must be >= 0 (0 = off)")
    if not 0 <= r.surgery.score_prefilter < 1:
        bad("surgery.score_prefilter", "must be in [0, 1) (0 = off)")
    if len(r.weights.sha256) != 64:
        bad("weights.sha256", "must be a 64-character hex sha256")


def resolve_recipe_path(recipe: str | Path | None) -> Path:
    """Accept a path, or a bare name of a recipe shipped in recipes/."""
    if recipe is None:
        recipe = DEFAULT_RECIPE
    p = Path(recipe)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    candidate = RECIPES_DIR / f"{recipe}.yaml"
    if candidate.exists():
        return candidate
    names = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
    raise FbtoolError(f"recipe {recipe!r} not found", f"give a YAML path or one of: {', '.join(names)}")


def load_recipe(recipe: str | Path | None = None) -> Recipe:
    path = resolve_recipe_path(recipe)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FbtoolError(f"recipe file {path} does not exist", "check the --recipe path") from None
    except yaml.YAMLError as exc:
        raise FbtoolError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return recipe_from_dict(data, source=str(path))


def recipe_from_dict(data: Any, source: str | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise FbtoolError(f"recipe {source or ''} must be a YAML mapping".replace("  ", " "))
    data = dict(data)
    names = {f.name: f for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - set(names) - {"source"})
    if unknown:
        raise FbtoolError(f"recipe field '{unknown[0]}' is not known", f"allowed: {', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key in _SECTIONS:
            kwargs[key] = _build(_SECTIONS[key], value, key)
        elif key != "source":
            kwargs[key] = _coerce(names[key], value, key)
    for required in ("name", "family", "variant", "weights", "input", "preprocess", "anchors"):
        if required not in kwargs:
            raise FbtoolError(f"recipe field '{required}' is required", f"see {RECIPES_DIR}/{DEFAULT_RECIPE}.yaml")
    r = Recipe(**kwargs)
    _check(r)
    return r
