"""The independent audit behind `fbtool blur --verify`: did any face stay sharp?

The detector that drove the blur cannot judge it: it does not see its own misses. The audit runs
judges of their own, on the ORIGINAL frames, at a low threshold:
- Ultra-Light RFB-640 (another family: SSD heads on an RFB backbone, boxes only, trained on its own
  data), at 0.5 (its demo's threshold is 0.7);
- RetinaFace MobileNet-0.25 at the frame's own pixel size (a second scale: the blur sees the frame
  letterboxed to 640x384, x1.33 for the shared GIFs, x0.83 for the MP4), at 0.3. Twice the recipe's
  size was tried first: on the x2.7-upscaled GIFs it found "faces" on floors and shirts at up to 0.99.
Every face any judge finds must lose >= 90% of its detail in the output (per face, never a mean:
toolchain.blur.proof's measure, the Laplacian variance in the inner ellipse, at the face's scale),
and the frame away from faces must be unchanged but for encoding (PSNR >= 30 dB). "Away from faces"
excludes the judges' faces and what the job says it blurred (the sidecar), each grown as in the
proof: a recall-first blur may blur a false positive, and that is not damage.

A face that loses < 90% is a leak, reported by frame and position; the worst faces go to a contact
sheet (original | output). Judged with PyTorch fp32 (toolchain.runners.TorchRunner) from the
weights, whatever runtime drove the blur.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .proof import GROW, MIN_DROP, MIN_PSNR, JudgedFaces, ProofReport, away_mask, check_frame, psnr

SHEET_FACES = 12
ULFD_SCORE, RETINAFACE_SCORE = 0.4, 0.2  # low: a face must be confirmed by both judges (_confirmed)
TILE_H = 96


@dataclass
class Judge:
    name: str
    recipe: object
    score: float
    native: bool = False  # input size = the frame's own (rounded up to 32): a second scale for any clip
    runner: object = None

    def detect(self, frames: list[np.ndarray]):
        from ..detector import detect_batch

        if self.runner is None:
            if self.native:
                h, w = frames[0].shape[:2]
                r = self.recipe
                self.recipe = dataclasses.replace(r, input=dataclasses.replace(r.input, width=-(-w // 32) * 32,
                                                                               height=-(-h // 32) * 32))
            self.runner = judge_runner(self.recipe)
        return detect_batch(frames, self.recipe, self.runner, score_threshold=self.score)


def judge_runner(recipe, parity_abs: float = 1e-3):
    """onnxruntime on the judge's own ONNX, exported from its PyTorch weights once into the cache
    (`$FBTOOL_CACHE/audit/`) and checked against PyTorch on a random batch: 5-8x faster than PyTorch
    on this CPU (RetinaFace at 1280x768: ~100 vs ~600 ms/frame), which decides whether a 1400-frame
    clip takes minutes or half an hour to audit."""

    from ..errors import FbtoolError
    from ..export import _torch_export
    from ..fsutil import atomic_path
    from ..runners import OrtRunner, TorchRunner
    from ..weights import cache_dir

    folder = cache_dir().parent / "audit"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe.name}_{recipe.input.width}x{recipe.input.height}_{recipe.hash}.onnx"
    torch_runner = None
    if not path.exists():
        torch_runner = TorchRunner(recipe)
        with atomic_path(path) as tmp:
            _torch_export(torch_runner.model.eval(), recipe, tmp, "torchscript", recipe.opset)
            rng = np.random.default_rng(0)
            x = rng.uniform(-1, 1, (2, 3, recipe.input.height, recipe.input.width)).astype(np.float32)
            feed = {recipe.input.name: x}
            ref, got = torch_runner.infer(feed), OrtRunner(tmp).infer(feed)
            worst = max(float(np.abs(np.asarray(ref[k]) - np.asarray(got[k])).max()) for k in ref)
            if worst > parity_abs:
                raise FbtoolError(f"the audit judge {path.name} differs from PyTorch by {worst:.2g}",
                                  "delete it from the cache and retry")
    return OrtRunner(path)


def default_judges() -> list[Judge]:
    """Ultra-Light RFB-640 at 0.4, and RetinaFace MobileNet-0.25 at the frame's own pixel size at 0.2."""
    from ..recipe import load_recipe

    return [Judge("ulfd_rfb640", load_recipe("ulfd_rfb640"), ULFD_SCORE),
            Judge("retinaface_mnet025@native", load_recipe("retinaface_mnet025"), RETINAFACE_SCORE, native=True)]


@dataclass
class AuditReport(JudgedFaces):
    judges: list[str]
    frames: int = 0
    faces: list = field(default_factory=list)  # per face: frame, judge, box, score, drop, judged, ...
    psnr_frames: list = field(default_factory=list)
    min_drop: float = MIN_DROP
    min_psnr: float = MIN_PSNR

    @property
    def psnr_min(self) -> float:
        return min((p for _, p in self.psnr_frames), default=math.inf)

    @property
    def ok(self) -> bool:
        return self.frames > 0 and not self.leaks and self.psnr_min >= self.min_psnr

    def failures(self) -> list[str]:
        out = [f"leak: frame {f['frame']} at x {f['box'][0]:.0f}-{f['box'][2]:.0f}, y {f['box'][1]:.0f}-"
               f"{f['box'][3]:.0f} ({f['judge']}, score {f['score']:.2f}): detail dropped {f['drop']:.1%} < "
               f"{self.min_drop:.0%}" for f in self.leaks]
        out += [f"frame {i}: PSNR away from faces {p:.1f} dB < {self.min_psnr} dB"
                for i, p in self.psnr_frames if p < self.min_psnr]
        return out

    def summary(self) -> str:
        wd = "n/a" if self.worst_drop is None else f"{self.worst_drop:.1%}"
        p = self.psnr_min
        return (f"{'PASS' if self.ok else 'FAIL'}: {self.frames} frames, {len(self.judged)}/{len(self.faces)} faces "
                f"judged by {' + '.join(self.judges)}, {len(self.leaks)} leaks, worst per-face detail drop {wd} "
                f"(need >= {self.min_drop:.0%}), PSNR away from faces >= "
                f"{'inf' if math.isinf(p) else f'{p:.1f}'} dB (need >= {self.min_psnr:.0f})")

    def to_dict(self) -> dict:
        per_judge = {j: sum(1 for f in self.judged if f["judge"] == j) for j in self.judges}
        lone = sum(1 for f in self.faces if not f.get("confirmed", True))
        p = self.psnr_min
        return {"ok": self.ok, "frames": self.frames, "faces": len(self.faces), "faces_judged": len(self.judged),
                "faces_judged_per_judge": per_judge, "faces_one_judge_only": lone, "leaks": len(self.leaks),
                "worst_detail_drop": self.worst_drop, "psnr_min_db": None if math.isinf(p) else p,
                "thresholds": {"min_drop": self.min_drop, "min_psnr_db": self.min_psnr},
                "summary": self.summary(), "failures": self.failures()[:50],
                "leak_faces": self.leaks[:500]}


def _tile(img: np.ndarray, box) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 0.75 + 2, (y2 - y1) * 0.75 + 2
    crop = img[max(int(cy - hh), 0):min(int(cy + hh) + 1, h), max(int(cx - hw), 0):min(int(cx + hw) + 1, w)]
    if crop.size == 0:
        crop = np.zeros((8, 8, 3), np.uint8)
    s = TILE_H / crop.shape[0]
    return cv2.resize(crop, (max(1, min(int(round(crop.shape[1] * s)), 2 * TILE_H)), TILE_H),
                      interpolation=cv2.INTER_NEAREST if s >= 1 else cv2.INTER_AREA)


def contact_sheet(worst: list, path) -> None:
    """PNG: one row per face (worst first): original | output, with frame, judge and drop."""
    import cv2

    from ..fsutil import write_bytes

    rows = []
    for f, a, b in worst:
        pair = np.concatenate([a, np.full((TILE_H, 4, 3), 255, np.uint8), b], axis=1)
        label = np.full((TILE_H, 330, 3), 255, np.uint8)
        lines = [f"frame {f['frame']}  drop {f['drop']:.1%}", f"{f['judge'][:30]}",
                 f"box {', '.join(f'{v:.0f}' for v in f['box'])}", "LEAK" if f["drop"] < MIN_DROP else "ok"]
        for i, t in enumerate(lines):
            cv2.putText(label, t, (6, 20 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 0, 200) if t == "LEAK" else (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, pair], axis=1))
    if not rows:
        rows = [np.full((TILE_H, 330, 3), 255, np.uint8)]
        cv2.putText(rows[0], "no face judged", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    ok, png = cv2.imencode(".png", np.concatenate(rows, axis=0))
    if not ok:
        raise OSError(f"cannot encode the contact sheet {path}")
    write_bytes(path, png.tobytes())


AGREE_IOU = 0.3


def _confirmed(boxes: np.ndarray, who: np.ndarray, n_judges: int) -> np.ndarray:
    """A face counts when a judge of another family/scale also finds it (IoU >= AGREE_IOU): each judge
    alone, at a low threshold, also fires on non-faces (measured on the shared MP4: RetinaFace at 0.8
    on the back of a shirt, 0.5 on a table's foot), and a blur cannot be asked to blur those."""
    if n_judges < 2 or not len(boxes):
        return np.ones(len(boxes), dtype=bool)
    from ..reference.nms import iou_matrix

    iou = iou_matrix(boxes, boxes)
    other = who[:, None] != who[None, :]
    return ((iou >= AGREE_IOU) & other).any(axis=1)


def audit_frames(pairs, judges: list[Judge], blurred=None, blurred_grow: float = GROW, batch: int = 4,
                 progress=None, sheet_faces: int = SHEET_FACES) -> tuple[AuditReport, list]:
    """Judge (index, original, output) triples. `blurred(index)` gives the boxes the job says it blurred
    there (kept out of the PSNR). Returns the report and the worst faces (face, tile in, tile out)."""
    from ..reference.detections import Detections

    report = AuditReport([j.name for j in judges])
    worst: list = []  # heap of (-drop, n, face, tile_in, tile_out): the `sheet_faces` lowest drops
    counter = itertools.count()

    def judge_chunk(chunk):
        dets = [j.detect([a for _, a, _ in chunk]) for j in judges]
        for c, (i, a, b) in enumerate(chunk):
            boxes, names, scores, who = [], [], [], []
            for k, (j, d) in enumerate(zip(judges, dets)):
                boxes.append(d[c].boxes)
                names += [j.name] * len(d[c])
                scores += [float(s) for s in d[c].scores]
                who += [k] * len(d[c])
            allb = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
            confirmed = _confirmed(allb, np.asarray(who), len(judges))
            tmp = ProofReport()
            # Untilted inner ellipses: one measure for every judge (Ultra-Light has no landmarks).
            check_frame(tmp, i, a, b, Detections(allb, np.asarray(scores, np.float32)))
            report.frames += 1
            for f, name, s, ok in zip(tmp.faces, names, scores, confirmed):
                f.update({"judge": name, "score": round(s, 3), "confirmed": bool(ok)})
                f["judged"] = f["judged"] and bool(ok)
                report.faces.append(f)
                if f["judged"]:
                    item = (-f["drop"], next(counter), f)
                    if len(worst) < sheet_faces:
                        heapq.heappush(worst, (*item, _tile(a, f["box"]), _tile(b, f["box"])))
                    elif item[0] > worst[0][0]:
                        heapq.heapreplace(worst, (*item, _tile(a, f["box"]), _tile(b, f["box"])))
            away = away_mask(a.shape, allb)
            if blurred is not None:
                bb = blurred(i)
                if len(bb):
                    away &= away_mask(a.shape, bb, blurred_grow)
            report.psnr_frames.append((i, psnr(a[away], b[away])))
        if progress is not None:
            progress(len(chunk))

    chunk: list = []
    for i, a, b in pairs:
        chunk.append((i, a, b))
        if len(chunk) == batch:
            judge_chunk(chunk)
            chunk = []
    if chunk:
        judge_chunk(chunk)
    worst_sorted = [(f, ta, tb) for _, _, f, ta, tb in sorted(worst, key=lambda w: (w[0], w[1]), reverse=True)]
    return report, worst_sorted


def audit_video(source, output, start: int = 0, max_frames: int | None = None, judges: list[Judge] | None = None,
                blurred=None, blurred_grow: float = GROW, sheet_path=None, progress: bool = True) -> AuditReport:
    """Stream the original and the output side by side (constant memory), judge every frame."""
    from ..errors import FbtoolError
    from ..media import iter_frames, video_info

    judges = judges or default_judges()
    bar = None
    if progress:
        from tqdm import tqdm

        n = int(video_info(output).get("frames") or 0) or None
        bar = tqdm(total=n, unit="frame", desc=f"audit {getattr(output, 'name', output)}", dynamic_ncols=True)

    def pairs():
        for (i, a), (_, b) in zip(iter_frames(source, start=start, max_frames=max_frames), iter_frames(output)):
            h, w = b.shape[:2]  # the encoder crops odd sizes to even
            yield i, a[:h, :w], b

    try:
        report, worst = audit_frames(pairs(), judges, blurred, blurred_grow,
                                     progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if report.frames == 0:
        raise FbtoolError(f"no frame to compare between {source} and {output}")
    if sheet_path is not None:
        contact_sheet(worst, sheet_path)
    return report
