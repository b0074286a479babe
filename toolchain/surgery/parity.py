"""Parity of a surgered graph with its source, on real frames, judged by the Python reference.

Raw layout: every output must equal the source's (same names) within the export tolerance.
Decoded layout: det_* must equal toolchain.reference's decode of the source's raw heads (float64),
with the same top-K selection (stable sort: ties keep the lower anchor index) and prefilter;
boxes and landmarks within DECODE_TOL_PX pixels. On top, the faces a parser would report
(reference.postprocess reads the decoded layout too: threshold, top-k, NMS) must match the faces
reference.postprocess finds from the source's raw heads.
"""

from __future__ import annotations

import numpy as np

from ..compare.policy import DECODE_TOL_PX, tensor_limit
from ..errors import FbtoolError
from ..reference.anchors import anchors_for
from ..reference.decode import decode_boxes, decode_landmarks
from ..reference.detections import Detections, postprocess, split_batch
from .io_names import DECODED


def reference_decoded(raw: dict[str, np.ndarray], recipe, width: int, height: int, top_k: int = 0,
                      score_prefilter: float = 0.0) -> dict[str, np.ndarray]:
    """The decoded layout computed by the Python reference from one image's raw heads."""
    o = recipe.outputs
    loc = np.asarray(raw[o.boxes]).reshape(-1, 4)
    probs = np.asarray(raw[o.scores]).reshape(loc.shape[0], -1)
    scores = probs[:, 1] if probs.shape[1] > 1 else probs[:, 0]
    anchors = anchors_for(recipe, width, height)
    order = np.argsort(-scores, kind="stable")[:top_k] if top_k else np.arange(len(scores))
    var = recipe.anchors.variance
    out = {DECODED["boxes"]: decode_boxes(loc[order], anchors[order], var, width, height),
           DECODED["scores"]: scores[order]}
    if score_prefilter > 0:
        out[DECODED["scores"]] = np.where(out[DECODED["scores"]] > score_prefilter, out[DECODED["scores"]], 0)
    if o.landmarks and o.landmarks in raw:
        ldm = np.asarray(raw[o.landmarks]).reshape(loc.shape[0], -1)
        pts = decode_landmarks(ldm[order], anchors[order], var, width, height)
        out[DECODED["landmarks"]] = pts.reshape(len(order), -1)
    return out


def _rows(ref: dict, cand: dict, batch: int) -> list[dict]:
    from ..compare.metrics import output_errors

    return [{"batch": batch, "output": name, "max_abs": st["max_abs"]}
            for name, st in output_errors(ref, cand, "the surgered graph").items()]


def _faces_match(a: Detections, b: Detections) -> tuple[bool, float]:
    if len(a) != len(b):
        return False, float("inf")
    if not len(a):
        return True, 0.0
    return True, float(np.abs(a.boxes.astype(np.float64) - b.boxes).max())


def check_parity(source, surgered, recipe, settings, layout: str, batches=(1, 4)) -> dict:
    """Run both graphs with onnxruntime on the recipe's validation frames; returns the figures."""
    from ..contours import model_inputs
    from ..runners import OrtRunner

    src, new = OrtRunner(source), OrtRunner(surgered)
    xs = model_inputs(recipe, max(batches))  # frames; face crops for a landmark model
    w, h = recipe.input.width, recipe.input.height
    rows: list[dict] = []
    faces: dict = {"reference": 0, "surgered": 0, "max_box_px": 0.0, "match": True}
    for b in batches:
        feed = {recipe.input.name: xs[:b]}
        raw, out = src.infer(feed), new.infer(feed)
        if layout != "decoded":  # raw heads, or a landmark model's outputs: equal to the source's
            rows += _rows(raw, out, b)
            continue
        for i, (r_i, c_i) in enumerate(zip(split_batch(raw), split_batch(out))):
            rows += [dict(row, image=i) for row in
                     _rows(reference_decoded(r_i, recipe, w, h, settings.top_k, settings.score_prefilter), c_i, b)]
            if b == max(batches):
                ref_faces, new_faces = postprocess(r_i, recipe), postprocess(c_i, recipe)
                ok, err = _faces_match(ref_faces, new_faces)
                faces["reference"] += len(ref_faces)
                faces["surgered"] += len(new_faces)
                faces["match"] = faces["match"] and ok
                faces["max_box_px"] = max(faces["max_box_px"], err)
    worst: dict[str, float] = {}
    for r in rows:
        worst[r["output"]] = max(worst.get(r["output"], 0.0), r["max_abs"])
    return {"layout": layout, "rows": rows, "max_abs": worst, "faces": faces if layout == "decoded" else None}


def judge(parity: dict, recipe) -> None:
    """Raise when a figure is outside its tolerance."""
    for name, err in parity["max_abs"].items():
        tol = tensor_limit(recipe, name, parity["layout"])
        if not err <= tol:
            raise FbtoolError(f"surgered output '{name}' differs from the reference by {err:.2e} > {tol:.0e}",
                              "no file was written; run the passes one by one (--passes) to find the culprit")
    faces = parity.get("faces")
    if faces and not (faces["match"] and faces["max_box_px"] <= DECODE_TOL_PX):
        raise FbtoolError(f"faces from the decoded graph differ from reference.postprocess: {faces['surgered']} vs "
                          f"{faces['reference']}, max box error {faces['max_box_px']:.2e} px", "no file was written")
