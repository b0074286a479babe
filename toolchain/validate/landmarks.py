"""`fbtool validate` for a landmark model (FaceMesh): PyTorch fp32 against every candidate of the run
folder on the same real face crops (MediaPipe crops of the faces found in validation_media).

Figures (compare.metrics.compare_landmarks): landmark error in crop pixels (192-px crop), face-oval mask
IoU, the presence decision; verdicts from compare.policy.landmark_checks, the policy the calibrate gate
applies. A candidate that cannot run here (a TensorRT engine on this CPU machine) is reported with why.
"""

from __future__ import annotations

import html
import os
import time
from typing import Any

from ..errors import FbtoolError
from ..fsutil import write_json, write_text
from ..runfolder import ENGINE, EXPORT_ONNX, FP16_ONNX, INT8_QDQ, INT8_QDQ_MAX, SURGERY_ONNX, RunFolder

ONNX_CANDIDATES = (("onnx", "fp32", EXPORT_ONNX, "exported ONNX on onnxruntime"),
                   ("surgered", "fp32", SURGERY_ONNX, "surgered ONNX on onnxruntime"),
                   ("int8-qdq", "int8", INT8_QDQ, "INT8 Q/DQ ONNX (entropy) on onnxruntime"),
                   ("int8-qdq-max", "int8", INT8_QDQ_MAX, "INT8 Q/DQ ONNX (max) on onnxruntime"),
                   ("fp16", "fp16", FP16_ONNX, "FP16 (AutoCast) ONNX on onnxruntime"))


def _candidates(run: RunFolder) -> list[dict[str, Any]]:
    from ..runners import available, open_runner

    out: list[dict[str, Any]] = []
    for name, precision, art, desc in ONNX_CANDIDATES:
        path = run.get(art)
        out.append({"name": name, "precision": precision, "description": desc,
                    "open": (lambda p=path: open_runner("onnxruntime", p)) if path is not None else None,
                    "reason": "ok" if path is not None else f"no {art.key} artifact of {art.stage} in the run folder"})
    path = run.get(ENGINE)
    info = (run.stage("build-engine") or {}).get("info", {})
    runtime, precision = info.get("runtime", "tensorrt"), info.get("precision", "fp32")
    ok, why = available(runtime) if path is not None else (False, "no engine in the run folder")
    if path is not None and not ok and runtime == "tensorrt-rtx":
        why = f"a TensorRT-RTX engine runs on RTX/Ampere GPUs only: {why}"
    out.append({"name": "engine", "precision": precision, "description": f"{runtime} engine ({precision})",
                "open": (lambda: open_runner(runtime, path)) if ok else None, "reason": why if not ok else "ok"})
    out.append({"name": "nvinfer", "precision": "fp32", "description": "the SGIE in DeepStream (two-model emulation)",
                "open": None, "reason": "judged with the detector's run folder (the two-model recipe's DeepStream path)"})
    return out


def validate_landmarks(recipe, out, only: set[str] | None = None, crops: int | None = None, media=None) -> dict:
    from ..contours import GATE_CROPS, face_crop_set, judge_landmarks, run_outputs
    from ..runners import TorchRunner

    run = RunFolder(out)
    cands = _candidates(run)
    if only:
        unknown = only - {c["name"] for c in cands}
        if unknown:
            raise FbtoolError(f"unknown candidate {sorted(unknown)[0]!r}", f"choose from {', '.join(c['name'] for c in cands)}")
        cands = [c for c in cands if c["name"] in only]
    if not any(c["open"] for c in cands):
        raise FbtoolError(f"no candidate could run in {run.root}", "run `fbtool export` (or `fbtool run`) first")
    clips = list(media or recipe.validation_media)
    cs = face_crop_set(recipe, clips, crops or GATE_CROPS)
    t0 = time.perf_counter()
    reference = run_outputs(TorchRunner(recipe), cs.x, recipe.input.name)
    ref_seconds = time.perf_counter() - t0
    results = []
    for c in cands:
        r = {"name": c["name"], "precision": c["precision"], "description": c["description"], "reason": c["reason"],
             "summary": {}, "checks": [], "breaches": [], "seconds": 0.0}
        if c["open"] is None:
            results.append(dict(r, status="skipped"))
            continue
        t1 = time.perf_counter()
        try:
            g = judge_landmarks(recipe, c["open"](), cs.x, reference, c["precision"])
        except (FbtoolError, ValueError, KeyError) as exc:
            results.append(dict(r, status="fail", reason=str(exc), breaches=[f"candidate '{c['name']}' could not run: {exc}"]))
            continue
        r["summary"] = {k: v for k, v in g.items() if isinstance(v, (int, float))}
        r["checks"] = [{"metric": k, "limit": v} for k, v in g["limits"].items()]
        r["breaches"] = [f"candidate '{c['name']}': {f}" for f in g["failures"]]
        r["seconds"] = round(time.perf_counter() - t1, 2)
        results.append(dict(r, status="pass" if g["passed"] else "fail"))
    report = {"kind": "landmarks", "recipe": {"name": recipe.name, "hash": recipe.hash},
              "frames": [f"{s}#{i}" for s, i in cs.where],
              "reference": {"runner": "torch-cpu fp32", "seconds": round(ref_seconds, 2), "faces": len(cs)},
              "candidates": results,
              "passed": all(r["status"] != "fail" for r in results) and any(r["status"] == "pass" for r in results)}
    paths: dict[str, str | os.PathLike] = {"report_json": run.file("report.json"), "report_html": run.file("report.html")}
    write_json(paths["report_json"], report)
    write_text(paths["report_html"], _html(report))
    report["files"] = {k: str(v) for k, v in paths.items()}
    run.record("validate", paths, {"passed": report["passed"], "candidates": {r["name"]: r["status"] for r in results}},
               recipe=recipe)
    return report


def summary_table(report: dict) -> str:
    head = f"{'candidate':<14}{'prec':<6}{'status':<9}{'lm mean':>8}{'lm max':>8}{'oval':>7}{'oval min':>9}{'pres':>6}  note"
    lines = [f"vs PyTorch fp32 on {len(report['frames'])} face crops of validation_media; lm: landmark error in "
             "crop px (192), oval: face-oval mask IoU, pres: presence decision agreement", head, "-" * len(head)]
    for c in report["candidates"]:
        s = c["summary"]
        if not s:
            lines.append(f"{c['name']:<14}{c['precision']:<6}{c['status']:<9}{'':>38}  {c['reason']}")
            continue
        lines.append(f"{c['name']:<14}{c['precision']:<6}{c['status']:<9}{s['mean_landmark_px']:>8.3f}"
                     f"{s['max_landmark_px']:>8.2f}{s['mean_oval_iou']:>7.3f}{s['min_oval_iou']:>9.3f}"
                     f"{s['presence_agreement']:>6.2f}  {c['seconds']:.1f} s")
    return "\n".join(lines)


def _html(report: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(c['name'])}</td><td>{c['precision']}</td><td>{c['status']}</td><td>"
                   + html.escape(", ".join(f"{k} {v:.4g}" for k, v in c["summary"].items()) or c["reason"])
                   + "</td></tr>" for c in report["candidates"])
    return (f"<!doctype html><meta charset=utf-8><title>fbtool validate {html.escape(report['recipe']['name'])}</title>"
            f"<h1>{html.escape(report['recipe']['name'])}: PyTorch fp32 vs candidates on {len(report['frames'])} "
            f"face crops</h1><table border=1><tr><th>candidate<th>precision<th>status<th>figures</tr>{rows}</table>")
