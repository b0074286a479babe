"""Implicit INT8 (TensorRT 10 only): an IInt8EntropyCalibrator2 fed by the calibration set.

Gated: runs only where `import tensorrt` works and a CUDA GPU is visible. TensorRT 11 and
TensorRT-RTX removed implicit INT8 (decisions.plan_build refuses it there).

The batches are the run folder's calibration set (stage "calibrate", artifact "calib_set"), loaded
with toolchain.calibset so they are preprocessed by the reference (nvinfer's steps). Device memory is a
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
from ..runfolder import CALIB_CACHE, CALIB_SET
from . import decisions as D


def cache_usable(blob: bytes, trt_version: str) -> bool:
    """True when TensorRT `trt_version` would take this legacy cache instead of recalibrating
    (the header's NV_TENSORRT_VERSION must match; toolchain.trt.calib_cache parses it)."""
    from ..trt.calib_cache import parse_cache

    try:
        cache = parse_cache(blob.decode("ascii"))
        return cache.matches(".".join(str(n) for n in D.parse_version(trt_version)[:3]))
    except (FbtoolError, UnicodeDecodeError):
        return False


def _load_batches(recipe, run, batch: int) -> list[Any]:
    from ..calibset import load_calibration_set

    p = run.get(CALIB_SET)
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
    existing = run.get(CALIB_CACHE)
    cache_in: bytes | None = None
    if existing is not None:
        blob = Path(existing).read_bytes()
        if cache_usable(blob, backend.version):
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

        # None means "no cache, calibrate" (TensorRT's documented Python idiom); the stubs say Buffer.
        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            return cache_in

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes(cache_target, bytes(memoryview(cache)))
            self.written = cache_target

    return EntropyCalibrator()
