"""DeepStream deployment files: nvinfer config, labels, deepstream-app config, blur app (the key checker is toolchain.nvinfer.keys)."""

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

__all__ = [
    "PARSER_LIB",
    "PARSE_BBOX_FUNC",
    "PARSE_MASK_FUNC",
    "PRECISIONS",
    "deployed_onnx",
    "emit",
    "engine_file_name",
    "infer_config_name",
]
