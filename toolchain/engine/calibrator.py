"""Implicit INT8 (TensorRT 10 only): an IInt8EntropyCalibrator2 fed by the calibration set.

Gated: runs only where `import tensorrt` works and a CUDA GPU is visible. TensorRT 11 and
TensorRT-RTX removed implicit INT8 (decisions.plan_build refuses it there).

The batches are the run folder's calibration set (stage "calibrate", artifact "calib_set"), loaded
with toolchain.calibrate.dataset so they are preprocessed exactly as nvinfer does. Device memory is a
torch CUDA tensor (no pycuda). The legacy cache (text, first line `TRT-<version>-EntropyCalibration2`,
what DeepStream's `int8-calib-file` reads) is read when its header matches the running TensorRT, so
TensorRT skips calibration; a cache written by another TensorRT version is ignored, as TensorRT
would ignore it, and the calibrator recalibrates from the set and writes a fresh cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FbtoolError
from ..fsutil import write_bytes
from . import decisions as D


def cache_header(cache: bytes) -> str:
    return cache.split(b"\n", 1)[0].decode("ascii", "replace").strip()


def cache_tag(version: str) -> str:
    """The version digits TensorRT writes in the cache header (NV_TENSORRT_VERSION).

    TensorRT 10+: major*10000 + minor*100 + patch (10.3.0 -> 100300); TensorRT 8: major*1000 + ...
    """
    v = D.parse_version(version) + (0, 0, 0)
    major, minor, patch = v[0], v[1], v[2]
    return str(major * 10000 + minor * 100 + patch) if major >= 10 else str(major * 1000 + minor * 100 + patch)


def cache_matches(cache: bytes, version: str) -> bool:
    head = cache_header(cache)
    parts = head.split("-")
    return len(parts) >= 3 and parts[0] == "TRT" and parts[1] == cache_tag(version)


def _load_batches(recipe, run, batch: int) -> list[Any]:
    from ..calibrate.dataset import load_calibration_set

    p = run.artifact(*D.CALIB_SET, required=False)
    if p is None:
        return []
    folder = p.parent if p.is_file() else p
    cset = load_calibration_set(folder, recipe, batch_size=batch)
    # Whole batches only: the calibrator's batch size is fixed, and the set is small (hundreds of frames).
    return [b for b in cset.batches(batch) if b.shape[0] == batch]


def make_calibrator(backend, recipe, run, profile: D.Profile, cache_target: Path) -> Any:
    """An IInt8EntropyCalibrator2 for this build (TensorRT 10, CUDA GPU)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = backend.trt
    import torch

    if not torch.cuda.is_available():
        raise FbtoolError("implicit INT8 calibration needs a CUDA GPU visible to torch",
                          "install a CUDA build of torch on the build machine, or use --int8-mode qdq")
    batch = profile.opt[0]
    existing = run.artifact(*D.CALIB_CACHE, required=False)
    cache_in: bytes | None = None
    if existing is not None:
        blob = Path(existing).read_bytes()
        if cache_matches(blob, backend.version):
            cache_in = blob
    batches = [] if cache_in is not None else _load_batches(recipe, run, batch)
    if cache_in is None and not batches:
        raise FbtoolError(f"no usable INT8 calibration data: the cache is missing or was written by another "
                          f"TensorRT, and the calibration set has fewer than {batch} frames",
                          "run `fbtool calibrate` on this run folder (with TensorRT "
                          f"{backend.version} for a matching cache)")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = torch.empty((batch, *profile.opt[1:]), dtype=torch.float32, device="cuda")
            self.written: Path | None = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int]:
            if self.index >= len(batches):
                return []  # TensorRT's signal that the data is exhausted
            self.device.copy_(torch.from_numpy(batches[self.index]))
            torch.cuda.synchronize()
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_in

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes(cache_target, bytes(memoryview(cache)))
            self.written = cache_target

    return EntropyCalibrator()
