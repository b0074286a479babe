"""nvinfer emulation: the emitted DeepStream config run in Python, with the compiled parser.

Lets the deployed configuration (preprocessing keys, parser, clustering, mapping to the frame) be
checked against the PyTorch reference on machines without DeepStream.
"""

from .config import ClassAttrs, NvInferConfig, read_config
from .nvinfer import NvInferEmulator, ObjectMeta, nvinfer_letterbox
from .objects import frame_mask, pair_mask_iou, to_detections
from .reference_parser import ReferenceParser

__all__ = [
    "ClassAttrs",
    "NvInferConfig",
    "NvInferEmulator",
    "ObjectMeta",
    "ReferenceParser",
    "frame_mask",
    "nvinfer_letterbox",
    "pair_mask_iou",
    "read_config",
    "to_detections",
]
