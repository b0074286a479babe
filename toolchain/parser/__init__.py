"""The DeepStream nvinfer custom parser (C++, plugins/): build it (a stage).

build.build_parser compiles plugins/ with g++ against DeepStream's headers or fbtool's own ABI
header. Driving the compiled parser from Python is runtime knowledge: toolchain.nvinfer.harness.
"""

from .build import ParserBuild, build_parser

__all__ = ["ParserBuild", "build_parser"]
