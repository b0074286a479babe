"""`fbtool validate`: the PyTorch fp32 reference against every candidate, on the same real frames.

Two levels: tensors (per output: max abs/rel error, cosine similarity; where the candidate emits the
same raw heads) and detections (precision/recall/F1 at IoU 0.5, mean matched IoU, score delta,
landmark error, mask IoU). Which recipe tolerance applies is toolchain.compare.policy's (as for the
calibrate gate). Any breach names the
candidate, the metric and the worst frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..compare.metrics import FrameMatch, compare_detections, summarize, tensor_stats
from ..compare.policy import Check, detection_checks
from ..detector import stack_raw
from ..errors import FbtoolError
from .candidates import Candidate, discover


@dataclass
class FrameRef:
    clip: str
    index: int

    @property
    def label(self) -> str:
        return f"{self.clip}#{self.index}"


@dataclass
class CandidateResult:
    name: str
    precision: str
    description: str
    status: str  # "pass" | "fail" | "skipped"
    reason: str = ""
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)  # {metric, value, limit, op, ok}
    breaches: list[str] = field(default_factory=list)
    worst_frames: list[int] = field(default_factory=list)
    per_frame: list[dict] = field(default_factory=list)
    pixels: dict = field(default_factory=dict)  # nvinfer: what the DeepStream blur app writes, proof + audit


def _record(res: CandidateResult, check: Check, worst: str) -> None:
    res.checks.append(check.to_dict())
    if not check.ok:
        res.breaches.append(f"candidate '{res.name}': {check.metric} {check.value:.4g} breaks {check.op} "
                            f"{check.limit:.4g} (worst frame {worst})")


def _worst_frames(matches: list[FrameMatch], k: int = 4) -> list[int]:
    def badness(i):
        m = matches[i]
        return (m.fp + m.fn, -min(m.ious, default=1.0), max(m.landmark_errors, default=0.0))

    return sorted(range(len(matches)), key=badness, reverse=True)[:k]


def _deployed_mask_ious(matches: list[FrameMatch], ref_dets, objects, recipe) -> None:
    """Replace the recomputed ellipse IoUs by those of the masks the compiled parser really emitted."""
    from ..nvinfer.emulation import pair_mask_iou

    for m, ref, objs in zip(matches, ref_dets, objects):
        m.mask_ious = [pair_mask_iou(objs[ci], ref, ri, recipe.mask.feather, recipe.mask.max_tilt_deg)
                       for ri, ci in m.pairs]


def judge(cand: Candidate, recipe, ref_dets, cand_dets, ref_raw, cand_raw, frames: list[FrameRef],
          objects=None) -> CandidateResult:
    res = CandidateResult(cand.name, cand.precision, cand.description, "pass")
    _, matches = compare_detections(ref_dets, cand_dets, mask_feather=recipe.mask.feather,
                                    max_tilt_deg=recipe.mask.max_tilt_deg, with_masks=objects is None)
    if objects is not None:
        _deployed_mask_ious(matches, ref_dets, objects, recipe)
    summary = summarize(matches)
    res.summary = summary.to_dict()
    res.worst_frames = _worst_frames(matches)
    res.per_frame = [{"frame": frames[i].label, "tp": m.tp, "fp": m.fp, "fn": m.fn,
                      "min_iou": min(m.ious, default=1.0), "max_landmark_px": max(m.landmark_errors, default=0.0)}
                     for i, m in enumerate(matches)]
    worst = frames[res.worst_frames[0]].label if frames else "-"
    if ref_raw is not None and cand_raw is not None:
        for name in ref_raw:
            if name in cand_raw and cand_raw[name].shape == ref_raw[name].shape:
                res.tensors[name] = tensor_stats(ref_raw[name], cand_raw[name])
    for check in detection_checks(summary, recipe, cand.precision, masks=cand.checks_masks, tensors=res.tensors):
        _record(res, check, worst)
    res.status = "fail" if res.breaches else "pass"
    return res


def validate(recipe, out, only: set[str] | None = None, per_clip: int = 6, step: int = 5, batch: int = 4,
             media: list[str] | None = None, progress=None, pixels=None) -> dict:
    """Run the reference and every available candidate; returns the report dict (also written to disk).

    `pixels(recipe, blur_infer_config, clips) -> {"ok", "summary", "failures", ...}`: judges what the
    DeepStream blur app would write (the apps floor's blur.deepstream.verify_deepstream; the CLI passes
    it) for the nvinfer candidate, when the run folder has the blur app's nvinfer config (DeepStream
    9.x); a failed proof or audit is a breach of that candidate."""
    from ..recipe import LANDMARK_FAMILIES

    if recipe.family in LANDMARK_FAMILIES:  # FaceMesh: judged on face crops, by landmarks and ovals
        from .landmarks import validate_landmarks

        return validate_landmarks(recipe, out, only, media=media)
    from ..frames import sample_frames
    from ..runfolder import RunFolder
    from ..runners import TorchRunner
    from .candidates import _runner_candidate

    run = RunFolder(out)
    clips = list(media or recipe.validation_media)
    if not clips:
        raise FbtoolError("no validation media", "name clips under validation_media in the recipe or pass --media")
    cands = discover(run, recipe, only)
    if not any(c.available for c in cands):  # before any work, and before anything is written
        raise FbtoolError(f"no candidate could run in {run.root}: "
                          + "; ".join(f"{c.name}: {c.reason}" for c in cands[:2]),
                          "run `fbtool export` (or `fbtool run`) first")
    sampled = sample_frames(clips, per_clip=per_clip, step=step)
    frames = [f for _, _, f in sampled]
    refs = [FrameRef(c, i) for c, i, _ in sampled]

    t0 = time.perf_counter()
    ref_run = _runner_candidate(lambda: TorchRunner(recipe), recipe)()
    ref_dets, ref_raw_list, _ = ref_run(frames, batch)
    ref_seconds = time.perf_counter() - t0
    ref_raw = stack_raw(ref_raw_list)
    if not any(len(d) for d in ref_dets):  # every candidate would "pass" with F1 1.0 on nothing
        raise FbtoolError(f"no face in the validation media ({len(frames)} frames of {', '.join(clips)})",
                          "validate on clips that show faces (--media or the recipe's validation_media)")

    results: list[CandidateResult] = []
    outputs: dict[str, list] = {}
    from ..progress import frames as bar

    for cand in bar(cands, f"validate ({len(frames)} frames)", total=len(cands), unit="candidate"):
        if progress:
            progress(cand.name)
        if not cand.available:
            results.append(CandidateResult(cand.name, cand.precision, cand.description, "skipped", cand.reason))
            continue
        t1 = time.perf_counter()
        try:
            dets, raw, objects = cand.make()(frames, batch)
        except (FbtoolError, ValueError, KeyError) as exc:
            results.append(CandidateResult(cand.name, cand.precision, cand.description, "fail", str(exc),
                                           breaches=[f"candidate '{cand.name}' could not run: {exc}"]))
            continue
        res = judge(cand, recipe, ref_dets, dets, ref_raw, stack_raw(raw), refs, objects)
        if pixels is not None and cand.name == "nvinfer" and cand.extra.get("blur_config"):
            res.pixels = pixels(recipe, cand.extra["blur_config"], clips)
            if not res.pixels["ok"]:
                res.breaches.append(f"candidate 'nvinfer': the DeepStream blur app's output fails: "
                                    f"{(res.pixels['failures'] or [res.pixels['summary']])[0]}")
                res.status = "fail"
        res.seconds = round(time.perf_counter() - t1, 2)
        results.append(res)
        outputs[cand.name] = dets

    from .two_model import two_model_section

    two_model = two_model_section(recipe, run, frames, ref_dets)  # None for a one-model recipe
    report = {
        "recipe": {"name": recipe.name, "hash": recipe.hash},
        "frames": [r.label for r in refs],
        "reference": {"runner": "torch-cpu fp32", "seconds": round(ref_seconds, 2),
                      "faces": int(sum(len(d) for d in ref_dets))},
        "candidates": [r.__dict__ for r in results],
        "passed": all(r.status != "fail" for r in results) and any(r.status == "pass" for r in results),
    }
    if two_model is not None:
        report["two_model"] = two_model  # reported, not gated (validate/two_model.py says why)
    from .report import write_reports

    paths = write_reports(run, report, frames, refs, ref_dets, outputs, recipe)
    report["files"] = {k: str(v) for k, v in paths.items()}
    run.record("validate", paths, {"passed": report["passed"],
                                   "candidates": {r.name: r.status for r in results}}, recipe=recipe)
    return report


def breaches(report: dict) -> list[str]:
    return [b for c in report["candidates"] for b in c["breaches"]]


def summary_table(report: dict) -> str:
    """The terminal table. Its first line says what the figures were measured on: calibrate's gate
    uses its own held-out frames, so its figures differ from these."""
    if report.get("kind") == "landmarks":
        from .landmarks import summary_table as landmark_table

        return landmark_table(report)
    head = f"{'candidate':<14}{'prec':<6}{'status':<9}{'F1':>7}{'mIoU':>7}{'lm max':>8}{'mask':>7}{'score d':>9}  note"
    n = len(report.get("frames", []))
    faces = report.get("reference", {}).get("faces", 0)
    lines = [f"vs PyTorch fp32 on {n} frames of validation_media ({faces} faces); lm max: worst landmark error "
             "(px), mask: mean mask IoU", head, "-" * len(head)]
    for c in report["candidates"]:
        s = c["summary"]
        if c["status"] == "skipped":
            lines.append(f"{c['name']:<14}{c['precision']:<6}{'skipped':<9}{'':>38}  {c['reason']}")
            continue
        if not s:
            lines.append(f"{c['name']:<14}{c['precision']:<6}{c['status']:<9}{'':>38}  {c['reason']}")
            continue
        lines.append(f"{c['name']:<14}{c['precision']:<6}{c['status']:<9}{s['f1']:>7.3f}{s['mean_iou']:>7.3f}"
                     f"{s['max_landmark_px']:>8.2f}{s['mean_mask_iou']:>7.3f}{s['max_score_delta']:>9.4f}  "
                     f"{c['seconds']:.1f} s")
        if c.get("pixels"):
            lines.append(f"{'':<14}{c['pixels']['summary']}")
    tm = report.get("two_model")
    if tm:
        from .two_model import summary_lines

        lines += summary_lines(tm)
    return "\n".join(lines)
