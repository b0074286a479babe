"""Names and numbers gst-nvinfer and fbtool's custom parser agree on, stated once.

The parser stage builds a library exporting these symbols; the deepstream stage writes them into
the nvinfer config; the harness and the emulation load them. DeepStream's install root follows
DeepStream's own convention, the DEEPSTREAM_ROOT variable.
"""

from __future__ import annotations

import os
from pathlib import Path

PARSER_LIB = "libnvdsinfer_fbtool.so"  # the custom parser nvinfer loads (custom-lib-path)
HARNESS_LIB = "libfbtool_harness.so"  # drives PARSER_LIB from Python (nvinfer.harness)
PARSE_BBOX_FUNC = "NvDsInferParseFbtoolFace"
PARSE_MASK_FUNC = "NvDsInferParseFbtoolFaceMask"
PARSER_SYMBOLS = (PARSE_BBOX_FUNC, PARSE_MASK_FUNC)
# fbtool's DeepStream blur (plugins/dsblur/): the nvdsvideotemplate custom library and its factory symbol
DSBLUR_LIB = "libnvds_fbtool_dsblur.so"
DSBLUR_SYMBOL = "CreateCustomAlgoCtx"
# nvtracker's low-level library (NvMultiObjectTracker, closed), relative to the DeepStream root
TRACKER_LL_LIB = "lib/libnvds_nvmultiobjecttracker.so"

# gst-nvinfer `network-mode`; also the precision suffix of the engine names nvinfer builds and looks for.
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}

# The frame nvinfer receives: nvstreammux scales every source to this size (enable-padding=0: stretched).
# The deepstream stage writes it into the app configs and build-parser into the parser, which clips
# boxes to the frame's part of the network input (docs/deepstream.md, "Faces cut by the frame's
# edges"); change it here and run build-parser and deepstream again.
STREAMMUX_WIDTH, STREAMMUX_HEIGHT = 1920, 1080

DEFAULT_DEEPSTREAM_ROOT = "/opt/nvidia/deepstream/deepstream"


def deepstream_root(given: str | os.PathLike | None = None) -> Path:
    """The DeepStream install: `given`, else $DEEPSTREAM_ROOT, else DeepStream's default path."""
    return Path(given or os.environ.get("DEEPSTREAM_ROOT") or DEFAULT_DEEPSTREAM_ROOT)
