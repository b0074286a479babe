"""The two-model DeepStream deployment (detector nvinfer -> box squaring -> FaceMesh SGIE -> contour
component), emulated, judged against the Python two-model reference (toolchain.contours).

Figures per matched face (detector boxes matched as toolchain.compare.metrics.match does):
- landmark error: mean distance of the 468 landmarks, frame pixels, where both say "face";
- contour-mask IoU: the reference oval (pixel centres inside the polygon) against the area DeepStream
  blurs for the object (its 32x32 mask on nvdsosd's cells, objects.sample_mask mode "blur");
- presence agreement: faces where one side falls back and the other does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..nvinfer.emulation.nvinfer import _scaled
from ..nvinfer.emulation.objects import sample_mask, to_detections
from ..nvinfer.emulation.secondary import ContouredObject, SecondaryEmulator
from ..reference.contour import polygon_frame_mask
from .metrics import match


def run_deployed(frames: list[np.ndarray], pgie, sgie: SecondaryEmulator,
                 mux: tuple[int, int] | None = None) -> list[list[ContouredObject]]:
    """Both models as DeepStream runs them, on source frames. `pgie` is an NvInferEmulator (built with
    the same `mux`): its objects come back on the source frame; the SGIE crops from the streammux frame
    (the source stretched to `mux`, bilinear), so they go there and the results come back."""
    import cv2

    out = []
    for frame, objs in zip(frames, pgie.infer(frames)):
        h, w = frame.shape[:2]
        if mux is None or (w, h) == tuple(mux):
            out.append(sgie.run(frame, objs))
            continue
        fx, fy = w / mux[0], h / mux[1]
        muxed = cv2.resize(frame, tuple(mux), interpolation=cv2.INTER_LINEAR)
        res = sgie.run(muxed, [_scaled(o, 1 / fx, 1 / fy) for o in objs])
        for r, o in zip(res, objs):
            r.obj = o if not r.contoured else _scaled(r.obj, fx, fy)
            r.detector = o
            if r.landmarks is not None:
                r.landmarks = r.landmarks * np.array([fx, fy])
        out.append(res)
    return out


@dataclass
class TwoModelFigures:
    faces: int = 0  # detector faces matched between the deployment and the reference
    both_face: int = 0
    ref_only: int = 0  # reference contours it, the deployment falls back to the detector's mask
    deployed_only: int = 0
    landmark_px: list[float] = field(default_factory=list)
    mask_ious: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        lm, iou = np.array(self.landmark_px), np.array(self.mask_ious)
        return {"faces": self.faces, "both_face": self.both_face, "ref_only": self.ref_only,
                "deployed_only": self.deployed_only,
                "landmark_px_mean": float(lm.mean()) if lm.size else None,
                "landmark_px_max": float(lm.max()) if lm.size else None,
                "mask_iou_mean": float(iou.mean()) if iou.size else None,
                "mask_iou_min": float(iou.min()) if iou.size else None}


def _region(a: tuple, b: tuple, w: int, h: int) -> tuple[int, int, int, int]:
    x0 = max(int(np.floor(min(a[0], b[0]))), 0)
    y0 = max(int(np.floor(min(a[1], b[1]))), 0)
    x1 = min(int(np.ceil(max(a[2], b[2]))), w)
    y1 = min(int(np.ceil(max(a[3], b[3]))), h)
    return x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)


def judge(frames: list[np.ndarray], ref_dets, ref_contours, deployed: list[list[ContouredObject]],
          presence: float, mux: tuple[int, int] | None = None) -> TwoModelFigures:
    """`ref_dets[i]`: the reference detector's Detections; `ref_contours[i][j]`: its FaceContour for face j.
    Masks are compared where nvdsosd blurs: on the streammux frame (`mux`), the reference oval scaled
    there too (on a small source, nvdsosd's whole-pixel box would be judged at the wrong scale)."""
    fig = TwoModelFigures()
    for frame, rd, rc, dep in zip(frames, ref_dets, ref_contours, deployed):
        h, w = frame.shape[:2]
        sx, sy = (1.0, 1.0) if mux is None else (mux[0] / w, mux[1] / h)
        mw, mh = (w, h) if mux is None else mux
        dets = to_detections([d.detector for d in dep], w, h)
        m = match(rd, dets, with_masks=False)
        for ri, ci in m.pairs:
            ref, d = rc[ri], dep[ci]
            fig.faces += 1
            ref_face = ref.presence >= presence
            if ref_face and d.contoured:
                fig.both_face += 1
            elif ref_face:
                fig.ref_only += 1
            elif d.contoured:
                fig.deployed_only += 1
            if not (ref_face and d.contoured):
                continue
            fig.landmark_px.append(float(np.linalg.norm(d.landmarks - ref.frame_landmarks(), axis=1).mean()))
            poly = ref.polygon * [sx, sy]
            obj = _scaled(d.obj, sx, sy)
            pb = (poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max())
            x0, y0, rw, rh = _region(pb, obj.box, mw, mh)
            ref_m = polygon_frame_mask(poly - [x0, y0], rh, rw)
            dep_m = sample_mask(obj, float(x0), float(y0), rw, rh, mode="blur") > 0
            union = (ref_m | dep_m).sum()
            fig.mask_ious.append(1.0 if union == 0 else float((ref_m & dep_m).sum() / union))
    return fig
