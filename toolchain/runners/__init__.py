"""Runners execute a model behind one interface: infer({input: [B,3,H,W] float32}) -> {name: array}.

Like Polygraphy's runners, any runner can be compared with any other because they all speak
dict[str, ndarray]. Each runner class answers `available() -> (bool, reason)`; `open_runner(kind)`
is the one place that picks and opens one (validate, the blur job and the nvinfer emulation use it).
"""

from __future__ import annotations

from ..errors import MissingDependency
from .base import Runner
from .onnxruntime import OrtRunner
from .torch import TorchRunner

KINDS = ("torch", "onnxruntime", "tensorrt", "tensorrt-rtx")


def available(kind: str) -> tuple[bool, str]:
    """Can a runner of `kind` run here? (False, why) where not."""
    if kind == "torch":
        return TorchRunner.available()
    if kind == "onnxruntime":
        return OrtRunner.available()
    if kind in ("tensorrt", "tensorrt-rtx"):
        from .tensorrt import TensorRTRunner

        return TensorRTRunner.available(kind)
    return False, f"unknown runner {kind!r} (one of {', '.join(KINDS)})"


def open_runner(kind: str, path=None, recipe=None, weights=None, device: str = "cpu", providers=None,
                threads: int | None = None, hint: str | None = None) -> Runner:
    """A runner of `kind`: torch (recipe, weights, device), onnxruntime (ONNX `path`), tensorrt /
    tensorrt-rtx (engine `path`). Raises MissingDependency with the reason where it cannot run here."""
    ok, why = available(kind)
    if not ok:
        raise MissingDependency(kind, f"the {kind} runner ({why})", hint)
    if kind == "torch":
        return TorchRunner(recipe, weights, device=device)
    if kind == "onnxruntime":
        return OrtRunner(path, providers=providers, threads=threads)
    from .tensorrt import TensorRTRunner

    return TensorRTRunner(path, runtime=None if kind == "tensorrt" else kind)  # None: the engine manifest's


__all__ = ["KINDS", "OrtRunner", "Runner", "TorchRunner", "available", "open_runner"]
