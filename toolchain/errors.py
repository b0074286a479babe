"""One exception type for every user-facing failure: a one-line cause plus a hint.

The CLI turns it into `Error: <cause> (hint: <hint>)`; library code never calls exit().
"""

from __future__ import annotations


class FbtoolError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class MissingDependency(FbtoolError):
    """An optional package or tool is not installed; reported, never a crash."""

    def __init__(self, package: str, purpose: str, install: str | None = None):
        super().__init__(
            f"{package} is not available, needed for {purpose}",
            install or f"pip install {package}",
        )
        self.package = package


def require(module: str, purpose: str, install: str | None = None):
    """Import an optional heavy module lazily, turning ImportError into MissingDependency."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken native library (OSError)
        raise MissingDependency(module, purpose, install) from exc
