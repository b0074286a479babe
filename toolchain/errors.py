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


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, docker stop, CI): raised like Ctrl-C so every cleanup path runs the same way."""


_OS_HINTS = {
    "EROFS": "the folder is read-only: choose a writable output path",
    "EACCES": "check the permissions of that path",
    "EPERM": "check the permissions of that path",
    "ENOSPC": "the disk is full: free some space or write elsewhere",
    "EDQUOT": "the disk quota is exceeded: free some space or write elsewhere",
    "EISDIR": "that path is a folder: give a file path",
    "ENOTDIR": "a part of that path is a file, not a folder",
    "ENOENT": "check that the path exists",
    "EEXIST": "remove it or choose another path",
    "ENAMETOOLONG": "use a shorter path",
}


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else exc.__class__.__name__)[:limit]


def as_fbtool_error(exc: BaseException) -> FbtoolError | None:
    """The one-line FbtoolError for an environment or file-format failure that escaped a stage (None:
    a programming error, which keeps its traceback)."""
    import errno

    if isinstance(exc, FbtoolError):
        return exc
    mod = type(exc).__module__ or ""
    if isinstance(exc, OSError) and not mod.startswith("av"):
        name = errno.errorcode.get(exc.errno or 0, "")
        where = f": {exc.filename}" if exc.filename else ""
        return FbtoolError(f"{exc.strerror or _first_line(exc)}{where}",
                           _OS_HINTS.get(name, "check the paths given on the command line"))
    if isinstance(exc, UnicodeError):
        return FbtoolError(f"a text file is not valid UTF-8 ({_first_line(exc, 120)})",
                           "recipes, manifests and configs are UTF-8 text; re-create the file")
    if mod.startswith("google.protobuf"):
        return FbtoolError(f"a model file could not be parsed ({_first_line(exc, 120)})",
                           "the ONNX file is empty, truncated or not ONNX: re-run the stage that wrote it")
    if mod.startswith(("onnx", "onnxruntime")):
        return FbtoolError(f"{mod.split('.')[0]} rejected the model: {_first_line(exc, 160)}",
                           "the ONNX file is corrupt or not from fbtool: re-run the stage that wrote it")
    if mod.startswith("av"):
        return FbtoolError(f"the media file could not be decoded: {_first_line(exc, 160)}",
                           "is it a complete image/GIF/MP4 file?")
    if mod.startswith("yaml"):
        return FbtoolError(f"not valid YAML: {_first_line(exc, 160)}", "check the recipe file")
    return None
