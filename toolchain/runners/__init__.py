"""Runners execute a model behind one interface: infer({input: [B,3,H,W] float32}) -> {name: array}.

Like Polygraphy's runners, any runner can be compared with any other because they all speak
dict[str, ndarray]. Each runner class answers `available() -> (bool, reason)`.
"""

from .base import Runner
from .onnxruntime import OrtRunner
from .torch import TorchRunner

__all__ = ["OrtRunner", "Runner", "TorchRunner"]
