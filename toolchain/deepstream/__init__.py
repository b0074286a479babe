"""DeepStream deployment files: nvinfer config, labels, deepstream-app config, blur app (the key
checker is toolchain.nvinfer.keys, the parser's names toolchain.nvinfer.names)."""

from .config import deployed_onnx, emit, engine_file_name, infer_config_name

__all__ = ["deployed_onnx", "emit", "engine_file_name", "infer_config_name"]
