"""A stand-in for the compiled parser, made of the Python reference, behind the harness's interface.

NOT the C++ parser: it lets the emulation's preprocessing, clustering and mapping be tested where
the parser cannot be built (no g++), and shows what the real parser must return. Same calls as
toolchain.nvinfer.harness.ParserHarness: parse_bbox / parse_mask(layers, net_w, net_h, thresholds,
func=..., order=None) -> list of dict(class_id, left, top, width, height, confidence[, mask,
mask_width, mask_height]) in network-input pixels.
- parse_bbox returns every candidate above the threshold (nvinfer clusters them, cluster-mode=2).
- parse_mask runs the reference NMS and top-k itself, since nvinfer does not cluster instance
  masks (cluster-mode=4), and adds each face's contour mask over its box.
"""

from __future__ import annotations

from ...reference.detections import candidates, select


class ReferenceParser:
    name = "python-reference-stand-in"

    def __init__(self, recipe):
        self.recipe = recipe

    def _candidates(self, layers, net_w, net_h, thresholds):
        return candidates(layers, self.recipe, net_w, net_h, float(thresholds[0]))

    @staticmethod
    def _obj(box, score) -> dict:
        x1, y1, x2, y2 = (float(v) for v in box)
        return {"class_id": 0, "left": x1, "top": y1, "width": x2 - x1, "height": y2 - y1,
                "confidence": float(score)}

    def parse_bbox(self, layers, net_w, net_h, thresholds, func=None, order=None):
        cand = self._candidates(layers, net_w, net_h, thresholds)
        return [self._obj(b, s) for b, s in zip(cand.boxes, cand.scores)]

    def parse_mask(self, layers, net_w, net_h, thresholds, func=None, order=None):
        t, m = self.recipe.thresholds, self.recipe.mask
        dets = select(self._candidates(layers, net_w, net_h, thresholds), t)
        masks = dets.masks(m.resolution, m.feather, m.max_tilt_deg)
        out = []
        for i in range(len(dets)):
            o = self._obj(dets.boxes[i], dets.scores[i])
            o.update(mask=masks[i], mask_width=m.resolution, mask_height=m.resolution)
            out.append(o)
        return out
