"""Engine file names, exactly as DeepStream's nvinfer builds them, so it never rebuilds our engine.

nvinfer (nvdsinfer_model_builder.cpp) saves and looks for
`<model path>_b<max batch>_<gpu<id>|dla<core>>_<fp32|int8|fp16>.engine`, where <model path> is the
ONNX file path as given in `onnx-file` (file name with its .onnx suffix) and <max batch> is the
config's batch-size (= the profile's max batch). A different name makes nvinfer rebuild the engine
on every start. TensorRT-RTX engines are not for nvinfer: they get a name nvinfer never looks for.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FbtoolError
from ..nvinfer.names import NETWORK_MODE

NVINFER_PRECISIONS = tuple(NETWORK_MODE)  # the engine-name suffixes nvinfer knows


def engine_file_name(onnx_name: str, max_batch: int, precision: str, gpu_id: int = 0,
                     dla_core: int | None = None) -> str:
    if precision not in NVINFER_PRECISIONS:
        raise FbtoolError(f"nvinfer has no engine-name suffix for precision {precision!r}",
                          f"build one of {', '.join(NVINFER_PRECISIONS)}")
    if max_batch < 1 or gpu_id < 0:
        raise FbtoolError(f"bad engine name parts: batch {max_batch}, gpu {gpu_id}")
    name = Path(onnx_name).name
    dev = f"dla{dla_core}" if dla_core is not None and dla_core >= 0 else f"gpu{gpu_id}"
    return f"{name}_b{max_batch}_{dev}_{precision}.engine"


def rtx_engine_file_name(onnx_name: str, max_batch: int, precision: str, targets: tuple[str, ...]) -> str:
    if precision not in NVINFER_PRECISIONS:
        raise FbtoolError(f"no engine-name suffix for precision {precision!r}")
    return f"{Path(onnx_name).name}_b{max_batch}_rtx-{'-'.join(t.lower() for t in targets)}_{precision}.engine"


def manifest_path(engine_path: str | Path) -> Path:
    """The engine manifest lives beside the engine: `<engine file>.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def parse_engine_file_name(name: str) -> dict | None:
    """Inverse of engine_file_name (for doctor/validate messages); None when it is not nvinfer's form."""
    import re

    m = re.match(r"^(?P<model>.+)_b(?P<batch>\d+)_(?P<dev>gpu|dla)(?P<id>\d+)_(?P<prec>fp32|int8|fp16)\.engine$",
                 Path(name).name)
    if not m:
        return None
    return {"model": m["model"], "max_batch": int(m["batch"]), "device": m["dev"], "id": int(m["id"]),
            "precision": m["prec"]}
