"""The legacy TensorRT INT8 calibration cache (TensorRT <= 10, DeepStream `int8-calib-file`).

Format (text), as TensorRT's calibrators write and read it:
    TRT-<NV_TENSORRT_VERSION>-<algorithm>
    <tensor name>: <big-endian hex of the float32 scale>
with scale = amax / 127 and NV_TENSORRT_VERSION = major*1000 + minor*100 + patch up to TensorRT 9
(8.6.1 -> 8601) and major*10000 + minor*100 + patch from TensorRT 10 (10.3.0 -> 100300), per
NvInferVersion.h. TensorRT ignores (and recalibrates over) a cache whose header names another version
or another algorithm, so the header is written for the target TensorRT version; trtexec and
DeepStream's nvinfer calibrate with the entropy-2 calibrator and expect `EntropyCalibration2`.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import write_text

# fbtool method -> TensorRT calibrator algorithm named in the header.
ALGORITHMS = {"entropy": "EntropyCalibration2", "max": "MinMaxCalibration"}
KNOWN_ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")


def trt_version_number(version: str) -> int:
    """'10.3' -> 100300, '8.6.1' -> 8601: TensorRT's NV_TENSORRT_VERSION for that release."""
    parts = str(version).strip().split(".")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise FbtoolError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR[.PATCH]",
                          "e.g. --trt-version 10.3 (DeepStream 7.1)") from None
    if not 1 <= len(nums) <= 3 or nums[0] < 5 or any(n < 0 or n > 99 for n in nums[1:]):
        raise FbtoolError(f"TensorRT version {version!r} is not of the form MAJOR.MINOR[.PATCH]",
                          "e.g. --trt-version 10.3 (DeepStream 7.1)")
    if nums[0] >= 11:
        raise FbtoolError(f"TensorRT {version} has no INT8 calibrators (removed in TensorRT 11)",
                          "use the Q/DQ ONNX (int8_qdq) with TensorRT 11; the cache is for TensorRT <= 10")
    major, minor, patch = (nums + [0, 0])[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def header(trt_version: str, algorithm: str = "EntropyCalibration2") -> str:
    if algorithm not in KNOWN_ALGORITHMS:
        raise FbtoolError(f"unknown calibration algorithm {algorithm!r}", f"one of {', '.join(KNOWN_ALGORITHMS)}")
    return f"TRT-{trt_version_number(trt_version)}-{algorithm}"


def encode_scale(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def decode_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def format_cache(scales: dict[str, float], trt_version: str, algorithm: str = "EntropyCalibration2") -> str:
    lines = [header(trt_version, algorithm)]
    for name, s in scales.items():
        if "\n" in name or not name:
            raise FbtoolError(f"tensor name {name!r} cannot be written to a calibration cache")
        if not (s > 0 and s < float("inf")):
            raise FbtoolError(f"tensor {name!r} has scale {s}, a cache needs a positive finite scale")
        lines.append(f"{name}: {encode_scale(s)}")
    return "\n".join(lines) + "\n"


def write_cache(path: str | os.PathLike, scales: dict[str, float], trt_version: str = "10.3",
                algorithm: str = "EntropyCalibration2") -> Path:
    return write_text(path, format_cache(scales, trt_version, algorithm))


@dataclass(frozen=True)
class CalibrationCache:
    version_number: int
    algorithm: str
    scales: dict[str, float]

    @property
    def header(self) -> str:
        return f"TRT-{self.version_number}-{self.algorithm}"

    def matches(self, trt_version: str) -> bool:
        """True when TensorRT `trt_version` would accept this cache rather than recalibrate."""
        return self.version_number == trt_version_number(trt_version)


def parse_cache(text: str, where: str = "calibration cache") -> CalibrationCache:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise FbtoolError(f"{where} is empty", "write it with `fbtool calibrate`")
    m = _HEADER.match(lines[0].strip())
    if not m:
        raise FbtoolError(f"{where} does not start with a TRT-<version>-<algorithm> header: {lines[0][:60]!r}")
    scales = {}
    for i, ln in enumerate(lines[1:], start=2):
        name, sep, hexval = ln.rpartition(": ")
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{8}", hexval.strip()):
            raise FbtoolError(f"{where} line {i} is not '<tensor>: <8 hex digits>': {ln[:60]!r}")
        scales[name] = decode_scale(hexval.strip())
    return CalibrationCache(int(m.group(1)), m.group(2), scales)


def read_cache(path: str | os.PathLike) -> CalibrationCache:
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FbtoolError(f"cannot read calibration cache {p}: {exc.__class__.__name__}") from None
    return parse_cache(text, str(p))
