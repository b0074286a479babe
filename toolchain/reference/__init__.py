"""The one Python reference for post-processing: anchors, decode, NMS, masks.

ONNX decode-in-graph, the C++ parser and every runtime are compared against this package.
"""

from .anchors import make_anchors
from .decode import decode_boxes, decode_landmarks
from .detections import Detections, postprocess
from .masks import ellipse_params, rasterize_mask
from .nms import nms

__all__ = [
           "Detections",
           "decode_boxes",
           "decode_landmarks",
           "ellipse_params",
           "make_anchors",
           "nms",
           "postprocess",
           "rasterize_mask",
]
