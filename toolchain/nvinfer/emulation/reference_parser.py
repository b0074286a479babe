"""A stand-in for the compiled parser, made of the Python reference, behind the harness's interface.

NOT the C++ parser: it lets the emulation's preprocessing, clustering and mapping be tested where
the parser cannot be built (no g++), and shows what the real parser must return. Same calls as
toolchain.nvinfer.harness.ParserHarness: parse_bbox / parse_mask(layers, net_w, net_h, thresholds,
func=..., order=None) -> list of dict(class_id, left, top, width, height, confidence[, mask,
mask_width, mask_height]) in network-input pixels.
- parse_bbox returns every candidate above the threshold (nvinfer clusters them, cluster-mode=2).
- parse_mask runs the reference NMS and top-k itself, since nvinfer does not cluster instance
  masks (cluster-mode=4), and adds each face's contour mask over its box.
- Both clip boxes to the frame's part of the network input (`content_region`: the deployment's
  streammux frame letterboxed as nvinfer does), dropping empty ones; the mask's ellipse is the whole
  face's, cut at that edge.
"""

from __future__ import annotations

import numpy as np

from ...reference.detections import candidates, select
from ...reference.masks import ellipse_params, rasterize_mask
from ..names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH


def content_region(net_w: int, net_h: int, letterbox: bool, symmetric: bool,
                   frame: tuple[int, int] = (STREAMMUX_WIDTH, STREAMMUX_HEIGHT)) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the network input the frame fills (the compiled parser's content_region)."""
    from .nvinfer import nvinfer_letterbox

    lb = nvinfer_letterbox(frame[0], frame[1], net_w, net_h, letterbox, symmetric)
    return float(lb.pad_x), float(lb.pad_y), float(lb.pad_x + lb.scaled_w), float(lb.pad_y + lb.scaled_h)


def clip_to(box, region) -> np.ndarray:
    """The parser's clip_box in float32: each side clamped into the region."""
    f = np.float32
    b = np.asarray(box, dtype=np.float32)
    x1, y1, x2, y2 = region
    return np.array([min(max(b[0], f(x1)), f(x2)), min(max(b[1], f(y1)), f(y2)),
                     min(max(b[2], f(x1)), f(x2)), min(max(b[3], f(y1)), f(y2))], dtype=np.float32)


class ReferenceParser:
    name = "python-reference-stand-in"

    def __init__(self, recipe, frame: tuple[int, int] = (STREAMMUX_WIDTH, STREAMMUX_HEIGHT)):
        self.recipe = recipe
        self.frame = frame

    def _region(self, net_w, net_h):
        p = self.recipe.preprocess
        return content_region(net_w, net_h, p.letterbox, p.symmetric_padding, self.frame)

    def _candidates(self, layers, net_w, net_h, thresholds):
        return candidates(layers, self.recipe, net_w, net_h, float(thresholds[0]))

    @staticmethod
    def _obj(box, score) -> dict:
        x1, y1, x2, y2 = (float(v) for v in box)
        return {"class_id": 0, "left": x1, "top": y1, "width": x2 - x1, "height": y2 - y1,
                "confidence": float(score)}

    def parse_bbox(self, layers, net_w, net_h, thresholds, func=None, order=None):
        cand = self._candidates(layers, net_w, net_h, thresholds)
        region = self._region(net_w, net_h)
        boxes = [clip_to(b, region) for b in cand.boxes]
        return [self._obj(b, s) for b, s in zip(boxes, cand.scores) if b[2] > b[0] and b[3] > b[1]]

    def parse_mask(self, layers, net_w, net_h, thresholds, func=None, order=None):
        t, m = self.recipe.thresholds, self.recipe.mask
        dets = select(self._candidates(layers, net_w, net_h, thresholds), t)
        region = self._region(net_w, net_h)
        out = []
        for i in range(len(dets)):
            b = clip_to(dets.boxes[i], region)
            if not (b[2] > b[0] and b[3] > b[1]):
                continue
            o = self._obj(b, dets.scores[i])
            lm = None if dets.landmarks is None else dets.landmarks[i]
            full = ellipse_params(dets.boxes[i], lm, m.max_tilt_deg)  # the whole face, cut at the edge
            prob = rasterize_mask(full, *(float(v) for v in b), m.resolution, m.resolution, m.feather)
            # 0 outside the contour, as the compiled parser writes it (nvdsosd blurs every non-zero cell)
            mask = np.where(prob >= 0.5, prob, 0.0).astype(np.float32)
            o.update(mask=mask, mask_width=m.resolution, mask_height=m.resolution)
            out.append(o)
        return out
