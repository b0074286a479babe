"""The build-engine stage: pure decisions (decisions), the build, and the implicit-INT8 calibrator.
TensorRT itself (adapter, manifest, naming, versions) is a backend: toolchain.trt."""
