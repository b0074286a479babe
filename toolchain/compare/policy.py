"""The one tolerance policy: which figure must meet which tolerance, for which precision.

The limits are the recipe's data (`tolerances:` in recipes/*.yaml, toolchain.recipe.Tolerances);
this table only says which field applies where. Export and surgery parity, the calibrate gate,
validate and the blur proof all ask here, so one product gets one verdict from every command
(before, the calibrate gate judged FP16 on F1 alone while validate also required the mean IoU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Detection figures: recipe.tolerances field per precision.
DETECTION = {
    "fp32": {"f1": "detection_f1", "mean_iou": "mean_iou"},
    "fp16": {"f1": "fp16_f1", "mean_iou": "mean_iou"},
    "int8": {"f1": "int8_f1", "mean_iou": "int8_mean_iou"},
}

# Surgery's decoded layout against the float64 reference decode (network-input pixels; scores).
DECODE_TOL_PX = 1e-3
SCORE_TOL = 1e-6

# The blur proof (blur/proof.py, judged by pixels): each face's detail (Laplacian variance over its
# inner ellipse) must drop by this much, and the frame away from faces must keep this PSNR.
BLUR_MIN_DETAIL_DROP = 0.90
BLUR_MIN_PSNR_DB = 30.0


@dataclass(frozen=True)
class Check:
    metric: str
    value: float
    limit: float
    op: str  # ">=" | "<="

    @property
    def ok(self) -> bool:
        # written so that NaN fails either way
        return bool(self.value >= self.limit if self.op == ">=" else self.value <= self.limit)

    def to_dict(self) -> dict:
        return dict(asdict(self), ok=self.ok)


def precision_class(precision: str) -> str:
    """"int8-entropy", "int8_qdq" -> "int8"; "fp16" -> "fp16"; anything else full precision."""
    for p in ("int8", "fp16"):
        if precision.startswith(p):
            return p
    return "fp32"


def detection_checks(summary, recipe, precision: str, masks: bool = False,
                     tensors: dict[str, dict] | None = None) -> list[Check]:
    """The checks a candidate of `precision` must pass against the fp32 reference.

    `summary`: compare.metrics.Summary. `masks`: the candidate emits its own masks (nvinfer path).
    `tensors`: per-output compare.metrics.tensor_stats, where the candidate has the raw heads.
    """
    t = recipe.tolerances
    cls = precision_class(precision)
    limits = DETECTION[cls]
    checks = [Check("f1", summary.f1, float(getattr(t, limits["f1"])), ">="),
              Check("mean_iou", summary.mean_iou, float(getattr(t, limits["mean_iou"])), ">=")]
    if cls == "fp32" and recipe.has_landmarks:
        checks.append(Check("max_landmark_px", summary.max_landmark_px, t.landmark_px, "<="))
    if masks:
        checks.append(Check("mean_mask_iou", summary.mean_mask_iou, t.mask_iou, ">="))
    if cls == "fp32":
        checks += [Check(f"tensor {name} max_abs", st["max_abs"], t.tensor_abs, "<=")
                   for name, st in (tensors or {}).items()]
    return checks


def tensor_limit(recipe, output: str, layout: str = "raw") -> float:
    """Max abs error allowed on one output of a graph that must equal its source (export, surgery).

    Raw heads: the recipe's export tolerance. Decoded layout: checked against the float64 reference
    decode, so to DECODE_TOL_PX pixels, scores to SCORE_TOL.
    """
    if layout == "decoded":
        from ..reference.detections import DECODED

        return SCORE_TOL if output == DECODED["scores"] else DECODE_TOL_PX
    return float(recipe.tolerances.export_abs)


# Landmark models (FaceMesh): the presence decision ("face" / "no face") may flip on this share of crops
# at most (crops whose presence sits on the threshold).
MIN_PRESENCE_AGREEMENT = 0.98


def landmark_checks(fig: dict, recipe, precision: str) -> list[Check]:
    """The checks a landmark model's candidate (any precision) must pass against PyTorch fp32:
    compare.metrics.compare_landmarks' figures. One limit for every precision: INT8 is deployed only
    where it is as good as FP16 needs to be."""
    t = recipe.tolerances
    checks = [Check("mean_landmark_px", fig["mean_landmark_px"], t.landmark_px, "<="),
              Check("mean_oval_iou", fig["mean_oval_iou"], t.mask_iou, ">="),
              Check("presence_agreement", fig["presence_agreement"], MIN_PRESENCE_AGREEMENT, ">=")]
    if precision_class(precision) == "fp32":
        checks.append(Check("max_landmark_px", fig["max_landmark_px"], t.tensor_abs, "<="))
    return checks
