"""TensorRT as a runtime (a backend, below the stages): the TensorRT/TensorRT-RTX adapter, the engine
manifest and its compatibility check, engine file naming, version parsing, and the legacy INT8
calibration-cache format. The build stage (toolchain.engine) and the runner (runners.tensorrt) both
use it; nothing here imports a stage. Only adapter.py touches the `tensorrt` module (lazily)."""
