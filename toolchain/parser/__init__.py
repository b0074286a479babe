"""The DeepStream nvinfer custom parser (C++, plugins/): build it, and drive it from Python.

build.build_parser compiles plugins/ with g++ against DeepStream's headers or fbtool's own ABI
header; harness.ParserHarness calls the compiled functions exactly as nvinfer does.
"""

from .build import BBOX_FUNC, MASK_FUNC, ParserBuild, build_parser
from .harness import ParserHarness, to_detections

__all__ = ["BBOX_FUNC", "MASK_FUNC", "ParserBuild", "ParserHarness", "build_parser", "to_detections"]
