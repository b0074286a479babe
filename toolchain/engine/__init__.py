"""TensorRT engines: pure decisions (decisions, naming, manifest), the TensorRT/TensorRT-RTX adapter,
the build, and the implicit-INT8 calibrator. Only adapter/build/calibrator touch TensorRT."""
