"""fbtool: PyTorch face detector -> ONNX -> TensorRT -> DeepStream face blur, proven at every step."""

__version__ = "0.1.0"
