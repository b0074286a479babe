"""TensorRT version strings and enum names, read without importing TensorRT."""

from __future__ import annotations

import re

from ..errors import FbtoolError


def parse_version(version: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", version or "")
    if not nums:
        raise FbtoolError(f"cannot read a version number from {version!r}")
    return tuple(int(n) for n in nums[:4])


def hardware_compat_name(level: str) -> str:
    """CLI value -> trt.HardwareCompatibilityLevel member name."""
    names = {"none": "NONE", "ampere-plus": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
    if level not in names:
        raise FbtoolError(f"unknown hardware compatibility {level!r}", f"choose one of {', '.join(names)}")
    return names[level]
