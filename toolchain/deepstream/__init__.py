"""DeepStream deployment files: nvinfer config, labels, deepstream-app config, blur app, and the checker."""

from .config import (
    PARSE_BBOX_FUNC,
    PARSE_MASK_FUNC,
    PARSER_LIB,
    PRECISIONS,
    deployed_onnx,
    emit,
    engine_file_name,
    infer_config_name,
)
from .keys import Finding, check, check_file

__all__ = [
    "PARSER_LIB",
    "PARSE_BBOX_FUNC",
    "PARSE_MASK_FUNC",
    "PRECISIONS",
    "Finding",
    "check",
    "check_file",
    "deployed_onnx",
    "emit",
    "engine_file_name",
    "infer_config_name",
]
