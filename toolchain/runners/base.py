"""The runner protocol."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str
    input_name: str
    output_names: list[str]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @classmethod
    def available(cls) -> tuple[bool, str]: ...
