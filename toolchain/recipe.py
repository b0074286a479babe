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
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import FbtoolError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
DEFAULT_RECIPE = "retinaface_mnet025"
# Names become file names (configs, scripts) and labels go into labels.txt and a shell script's
# comments: a small safe character set keeps them from leaving a folder or reaching a shell.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LABEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .-]{0,62}[A-Za-z0-9_.-]|[A-Za-z0-9_]")
MAX_SIDE = 8192  # input width/height: larger is a typo, not a face detector
MAX_BATCH = 1024
MAX_LIST = 1024  # items in any recipe list (labels, media, anchors)
MAX_ALIASES = 100
LANDMARK_FAMILIES = ("facemesh",)  # models run on a face crop, not a frame: no anchors, no boxes  # YAML aliases per file: a recipe needs few; an alias bomb needs many


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
    """Stable ONNX output names. Raw heads: deltas, probabilities, landmark deltas. A landmark model
    (FaceMesh) has no boxes: its scores are the face-presence probability, its landmarks crop pixels."""

    boxes: str | None = "loc"
    scores: str = "conf"
    landmarks: str | None = "landmarks"
    num_landmarks: int = 5

    @property
    def names(self) -> list[str]:
        """The model's outputs in the order the network returns them."""
        return [n for n in (self.boxes, self.scores, self.landmarks) if n]


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
class ContourSpec:
    """The face contour of a two-model recipe: a landmark model (FaceMesh) run on each detected face.

    `model` names the landmark model's recipe (None: the detector's ellipse, the one-model recipe).
    MediaPipe's crop: a square `crop_scale` times the face box's long side about its centre, turned to
    level the eyes when `rotate`; below `presence` the landmark model says "no face" and the detector's
    ellipse stays (docs/contour.md)."""

    model: str | None = None
    presence: float = 0.5
    crop_scale: float = 1.5
    rotate: bool = True


@dataclass(frozen=True)
class BlurSpec:
    """`fbtool blur` settings (docs/blur.md): recall first. Not part of the model: outside Recipe.hash."""

    score: float = 0.3  # blur threshold: below thresholds.score (validation), a missed face is a leak
    max_gap: int = 8  # frames: a track missed for up to this many frames is blurred in the gap; also
    # how far back a new track is blurred before its first detection (the job holds this many frames)
    hold: int = 8  # frames a track stays blurred after its last detection, at its predicted position
    track_iou: float = 0.2  # least IoU between a track's predicted box and a detection to continue it
    mask_scale: float = 1.3  # blurred ellipse = the face's ellipse grown by this factor (deface's default)
    blocks_per_face: float = 3.0  # blur strength: the block size k is the face's short side / this
    mode: str = "blur"  # blur | pixelate | solid (what replaces a face)
    # The DeepStream blur app's nvinfer threshold (None: `score`). A live pipeline cannot blur a face
    # before its first detection or across a gap as `fbtool blur` does (no look-ahead), so it finds more
    # faces instead (docs/deepstream.md, "Every frame of every shared clip").
    live_score: float | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    variant: str
    weights: Weights
    input: InputSpec
    preprocess: Preprocess
    anchors: Anchors | None = None  # detectors only (checked on load); a landmark model has none
    outputs: Outputs = Outputs()
    thresholds: Thresholds = Thresholds()
    mask: MaskSpec = MaskSpec()
    tolerances: Tolerances = Tolerances()
    surgery: Surgery = Surgery()
    blur: BlurSpec = BlurSpec()
    contour: ContourSpec = ContourSpec()
    labels: tuple[str, ...] = ("face",)
    opset: int = 18
    validation_media: tuple[str, ...] = ()
    calibration_media: tuple[str, ...] = ()
    source: str | None = None  # path the recipe was loaded from

    @property
    def has_landmarks(self) -> bool:
        return self.outputs.landmarks is not None

    @property
    def live_blur_score(self) -> float:
        """pre-cluster-threshold of the DeepStream blur app (blur.live_score, else blur.score)."""
        return self.blur.score if self.blur.live_score is None else self.blur.live_score

    @property
    def live_blur_mask(self) -> str:
        """The DeepStream blur's mask rule (plugins/dsblur `mask:` property): `own`, the contour masks the
        two-model chain attaches; else `box`, the whole (grown) box: nvinfer's boxes of small, fast faces
        sit off the face and its ellipse misses their corners (docs/deepstream.md)."""
        return "own" if self.contour.model is not None else "box"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d

    @property
    def hash(self) -> str:
        """Content hash of everything that defines the model's behaviour (not where it was loaded from,
        nor the blur job's settings: changing them must not invalidate exports and engines)."""
        d = self.to_dict()
        d.pop("blur", None)
        if self.contour == ContourSpec():  # one-model recipes keep the hashes they had before contours
            d.pop("contour", None)
        blob = json.dumps(d, sort_keys=True).encode()
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
    "blur": BlurSpec,
    "contour": ContourSpec,
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
    if t.startswith("tuple") and isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
        raise FbtoolError(f"recipe field '{where}' has {len(value)} entries", f"at most {MAX_LIST}")
    try:
        if t.startswith("tuple[tuple"):
            return tuple(tuple(float(x) for x in row) for row in value)
        if t.startswith("tuple[int"):
            return tuple(int(x) for x in value)
        if t.startswith("tuple[float"):
            return tuple(float(x) for x in value)
        if t.startswith("tuple[str"):
            if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
                raise ValueError  # str() of nested lists would expand a YAML alias bomb
            return tuple(value)
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
        import reprlib

        raise FbtoolError(f"recipe field '{where}' has a bad value {reprlib.repr(value)}", f"expected {t}") from None
    return value


def _check(r: Recipe) -> None:
    def bad(field_name: str, why: str):
        raise FbtoolError(f"recipe field '{field_name}' {why}", f"fix it in {r.source or 'the recipe'}")

    if not NAME_RE.fullmatch(r.name):
        bad("name", f"{r.name[:40]!r} must be 1-64 letters, digits, '_', '-', '.' (it names files)")
    if not r.labels:
        bad("labels", "must name at least one class")
    for i, label in enumerate(r.labels):
        if not LABEL_RE.fullmatch(label):
            bad(f"labels[{i}]", f"{label[:40]!r} must be 1-64 letters, digits, '_', '-', '.', inner spaces")
    _check_numbers(r, bad)
    _check_contour(r, bad)
    if r.preprocess.color not in ("bgr", "rgb"):
        bad("preprocess.color", f"must be bgr or rgb, got {r.preprocess.color!r}")
    if len(r.preprocess.mean) != 3:
        bad("preprocess.mean", "must have 3 values (one per channel)")
    if r.preprocess.scale <= 0:
        bad("preprocess.scale", "must be > 0")
    if r.preprocess.interpolation not in ("nearest", "bilinear"):
        bad("preprocess.interpolation", "must be nearest or bilinear")
    for dim in ("width", "height"):
        v = getattr(r.input, dim)
        if v <= 0 or v % 32 or v > MAX_SIDE:
            bad(f"input.{dim}", f"must be a positive multiple of 32 up to {MAX_SIDE}, got {v}")
    b = r.input.batch
    if not (1 <= b.min <= b.opt <= b.max <= MAX_BATCH):
        bad("input.batch", f"needs 1 <= min <= opt <= max <= {MAX_BATCH}, got {b.min}/{b.opt}/{b.max}")
    if r.family in LANDMARK_FAMILIES:
        _check_landmark_model(r, bad)
    else:
        _check_anchors(r, bad)
    _check_rest(r, bad)


def _check_anchors(r: Recipe, bad) -> None:
    a = r.anchors
    if a is None:
        bad("anchors", "is required for a detector")
        return
    if not a.steps:
        bad("anchors.steps", "must list at least one stride")
    if len(a.steps) != len(a.min_sizes):
        bad("anchors.min_sizes", "needs one list per entry of anchors.steps")
    if any(s <= 0 for s in a.steps):
        bad("anchors.steps", "must be positive")
    if any(not row or any(m <= 0 for m in row) for row in a.min_sizes):
        bad("anchors.min_sizes", "every size must be positive")
    if len(a.variance) != 2:
        bad("anchors.variance", "must have 2 values")
    if any(v <= 0 for v in a.variance):
        bad("anchors.variance", "must be positive")


def _check_rest(r: Recipe, bad) -> None:
    if not 0 < r.thresholds.score < 1:
        bad("thresholds.score", "must be in (0, 1)")
    if not 0 < r.thresholds.nms_iou <= 1:
        bad("thresholds.nms_iou", "must be in (0, 1]")
    # top_k is nvinfer's topk too: there 0 keeps NO object, while the parser and the reference would
    # read 0 as "no limit" (gst_nvinfer_parse_class_attrs refuses < 0)
    if r.thresholds.pre_nms_top_k < 1:
        bad("thresholds.pre_nms_top_k", "must be >= 1")
    if r.thresholds.top_k < 1:
        bad("thresholds.top_k", "must be >= 1")
    if r.mask.resolution < 4 or r.mask.resolution > 512:
        bad("mask.resolution", "must be in [4, 512]")
    if not 0 <= r.mask.feather <= 1:
        bad("mask.feather", "must be in [0, 1]")
    for f in dataclasses.fields(Tolerances):
        v = getattr(r.tolerances, f.name)
        if v < 0 or (f.name.endswith(("f1", "iou")) and v > 1):
            bad(f"tolerances.{f.name}", "must be >= 0" + (" and <= 1" if f.name.endswith(("f1", "iou")) else ""))
    if r.outputs.num_landmarks < 0:
        bad("outputs.num_landmarks", "must be >= 0")
    if r.surgery.top_k < 0:
        bad("surgery.top_k", "must be >= 0 (0 = off)")
    if not 0 <= r.surgery.score_prefilter < 1:
        bad("surgery.score_prefilter", "must be in [0, 1) (0 = off)")
    bl = r.blur
    if not 0 < bl.score < 1:
        bad("blur.score", "must be in (0, 1)")
    if bl.score > r.thresholds.score:
        bad("blur.score", f"must not exceed thresholds.score ({r.thresholds.score}): the blur is recall-first")
    if bl.live_score is not None and not 0 < bl.live_score <= bl.score:
        bad("blur.live_score", f"must be in (0, blur.score = {bl.score}]: the live pipeline is recall-first too")
    for name in ("max_gap", "hold"):
        if not 0 <= getattr(bl, name) <= 250:
            bad(f"blur.{name}", "must be in [0, 250] frames")
    if not 0 < bl.track_iou < 1:
        bad("blur.track_iou", "must be in (0, 1)")
    if not 1.0 <= bl.mask_scale <= 3.0:
        bad("blur.mask_scale", "must be in [1, 3] (1 = the detector's ellipse)")
    if not 1.0 <= bl.blocks_per_face <= 16.0:
        bad("blur.blocks_per_face", "must be in [1, 16]")
    if bl.mode not in ("blur", "pixelate", "solid"):
        bad("blur.mode", f"must be blur, pixelate or solid, got {bl.mode!r}")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", r.weights.sha256):
        bad("weights.sha256", "must be a 64-character hex sha256")
    if Path(r.weights.file).name != r.weights.file or r.weights.file in ("", ".", ".."):
        bad("weights.file", "must be a plain file name (looked up in the cache and mirrors)")


def _check_landmark_model(r: Recipe, bad) -> None:
    if r.anchors is not None:
        bad("anchors", f"must be absent for family {r.family} (a landmark model has no anchors)")
    if r.outputs.boxes is not None or not r.outputs.scores or not r.outputs.landmarks:
        bad("outputs", "of a landmark model: boxes null, scores (face presence) and landmarks named")
    if r.contour.model is not None:
        bad("contour.model", "belongs in the detector's recipe, not the landmark model's")


def _check_contour(r: Recipe, bad) -> None:
    c = r.contour
    if c.model is not None and not NAME_RE.fullmatch(c.model):
        bad("contour.model", f"{c.model[:40]!r} must name a recipe (letters, digits, '_', '-', '.')")
    if not 0 < c.presence < 1:
        bad("contour.presence", "must be in (0, 1)")
    if not 1.0 <= c.crop_scale <= 3.0:
        bad("contour.crop_scale", "must be in [1, 3] (MediaPipe: 1.5)")
    if c.model is not None and not r.has_landmarks:
        bad("contour.model", "needs a detector with eye landmarks (the crop is turned by the eye line)")


def _check_numbers(r: Recipe, bad) -> None:
    """NaN and infinity pass every `<`/`>` test: refuse them in every float of the recipe."""
    def walk(obj, where):
        if isinstance(obj, float) and not math.isfinite(obj):
            bad(where, f"must be a finite number, got {obj}")
        elif dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name), f"{where}.{f.name}" if where else f.name)
        elif isinstance(obj, tuple):
            for x in obj:
                walk(x, where)

    walk(r, "")


def with_blur(r: Recipe, **changes) -> Recipe:
    """The recipe with some `blur:` settings replaced (command-line overrides), validated like the file."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return r
    out = dataclasses.replace(r, blur=dataclasses.replace(r.blur, **changes))
    _check(out)
    return out


CONTOURS = ("ellipse", "facemesh")  # --contour: the detector's ellipse, or a landmark model's recipe


def with_contour(r: Recipe, contour: str | None) -> Recipe:
    """The recipe with its face contour chosen on the command line (None: the recipe's own)."""
    if contour is None:
        return r
    if contour not in CONTOURS:
        raise FbtoolError(f"unknown contour {contour!r}", f"choose one of {', '.join(CONTOURS)}")
    out = dataclasses.replace(r, contour=dataclasses.replace(r.contour, model=None if contour == "ellipse" else contour))
    _check(out)
    return out


def landmark_recipe(r: Recipe) -> Recipe | None:
    """The landmark model's recipe a two-model recipe names in `contour.model` (None: the ellipse)."""
    if r.contour.model is None:
        return None
    second = load_recipe(r.contour.model)
    if second.family not in LANDMARK_FAMILIES:
        raise FbtoolError(f"recipe field 'contour.model' names {second.name}, a {second.family} detector",
                          f"name a landmark model's recipe ({', '.join(LANDMARK_FAMILIES)})")
    return second


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


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a file with many aliases (a "billion laughs" bomb)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                raise FbtoolError(f"recipe uses more than {MAX_ALIASES} YAML aliases", "write the values out")
        return super().compose_node(parent, index)


def load_recipe(recipe: str | Path | None = None) -> Recipe:
    path = resolve_recipe_path(recipe)
    if path.is_dir():
        raise FbtoolError(f"recipe {path} is a folder", "give the recipe's YAML file")
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_SafeLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise FbtoolError(f"recipe file {path} does not exist", "check the --recipe path") from None
    except UnicodeDecodeError:
        raise FbtoolError(f"recipe {path} is not UTF-8 text", "save it as UTF-8") from None
    except OSError as exc:
        raise FbtoolError(f"recipe {path} cannot be read: {exc.strerror}", "check the --recipe path") from None
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
    for required in ("name", "family", "variant", "weights", "input", "preprocess"):
        if required not in kwargs:
            raise FbtoolError(f"recipe field '{required}' is required", f"see {RECIPES_DIR}/{DEFAULT_RECIPE}.yaml")
    r = Recipe(**kwargs)
    _check(r)
    return r
