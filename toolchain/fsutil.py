"""Atomic file writes: an artifact is either complete or absent, never half written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temp_beside(target: Path) -> Path:
    """A new empty temporary file next to `target` (same folder, so a rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The pid in the name lets a later run tell a killed writer's leftover from a live one (sweep_stale).
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".part" + target.suffix,
                               dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; artifacts get the usual permissions
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` only on success."""
    target = Path(target)
    tmp_path = temp_beside(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json(target: str | os.PathLike, obj) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# `.<name>.<pid>.<random>.part<suffix>` (temp_beside) and `.parser-<pid>-<random>` (build folders).
_TEMP_FILE = re.compile(r"^\..*\.(\d+)\.[A-Za-z0-9_]+\.part(\.[^.]*)?$|^\..*\.part\.[^.]*$")
_TEMP_DIR = re.compile(r"^\.parser-(?:old-)?(\d+)?")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(m: re.Match) -> bool:
    pid = next((g for g in m.groups() if g and g.isdigit()), None)
    return pid is None or not pid_alive(int(pid))


def sweep_stale(folder: str | os.PathLike, depth: int = 1, only: str | None = None) -> list[Path]:
    """Delete temporaries a killed fbtool left in `folder` (and its subfolders, `depth` deep).

    Only names fbtool itself makes (temp_beside, `.parser-*` build folders) whose writer process is
    gone; `only`: restrict to temporaries of the file named so. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if only is not None and not e.name.startswith(f".{only}.") and not e.name.startswith(f"..{only}."):
            continue
        if is_dir:
            m = _TEMP_DIR.match(e.name)
            if m and only is None and _stale(m):
                shutil.rmtree(e.path, ignore_errors=True)
                removed.append(Path(e.path))
            elif depth > 0 and not e.name.startswith(".") and only is None:
                removed += sweep_stale(e.path, depth - 1)
            continue
        m = _TEMP_FILE.match(e.name)
        if m and _stale(m):
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                removed.append(Path(e.path))
    return removed


def is_regular(path: str | os.PathLike) -> bool:
    """A regular file (after symlinks): not a folder, FIFO, socket or device."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_overwrite(outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None]) -> None:
    """Raise when an output path is an input, or two outputs are one path (names are the option names)."""
    from .errors import FbtoolError

    outs = [(k, Path(v)) for k, v in outputs.items() if v is not None]
    ins = [(k, Path(v)) for k, v in inputs.items() if v is not None]
    for i, (ko, po) in enumerate(outs):
        for ki, pi in ins:
            if same_file(po, pi):
                raise FbtoolError(f"{ko} {po} would overwrite the input {ki} {pi}", f"choose another path for {ko}")
        for ko2, po2 in outs[i + 1:]:
            if same_file(po, po2):
                raise FbtoolError(f"{ko} and {ko2} are the same file {po}", "give each output its own path")
