"""Weights store: find a published state_dict by file name, verify its sha256, cache it.

Sources, in order:
1. an explicit path (`--weights PATH`);
2. the cache folder (`$FBTOOL_CACHE`, default `~/.cache/fbtool/weights`);
3. mirror folders: `$FBTOOL_WEIGHTS_MIRROR` (os.pathsep-separated) and `../shared/models` beside
   the checkout (this project's environment);
4. the published URL in the recipe, when online (downloaded to a temporary file, verified, renamed).
Every file is checked against the recipe's sha256 before torch ever unpickles it.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from .errors import FbtoolError
from .fsutil import atomic_path, sha256_file
from .recipe import Weights

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("FBTOOL_CACHE", Path.home() / ".cache" / "fbtool")) / "weights"


def mirror_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("FBTOOL_WEIGHTS_MIRROR", "").split(os.pathsep) if p]
    dirs.append(REPO_ROOT.parent / "shared" / "models")
    return dirs


def verify(path: Path, expected: str) -> Path:
    if path.stat().st_size == 0:
        raise FbtoolError(f"weights {path} are empty (0 bytes)", "fetch the published file again")
    actual = sha256_file(path)
    if actual != expected:
        raise FbtoolError(
            f"weights {path} have sha256 {actual[:12]}..., expected {expected[:12]}...",
            "the file is corrupt or a different model; delete it or point --weights at the published file",
        )
    return path


def resolve_weights(spec: Weights, explicit: str | os.PathLike | None = None, download: bool = True) -> Path:
    if explicit is not None:
        p = Path(explicit)
        if p.is_dir():
            raise FbtoolError(f"--weights {p} is a folder", "give the .pth file itself")
        if not p.is_file():
            raise FbtoolError(f"weights file {p} does not exist", "check the --weights path")
        return verify(p, spec.sha256)
    cached = cache_dir() / spec.sha256[:16] / spec.file
    # A corrupt cache entry (our own copy, e.g. cut by a full disk) must not hide the mirror's good
    # one; a mirror's copy is what the user pointed at, so a bad one there is an error.
    bad_cache: FbtoolError | None = None
    if cached.is_file():
        try:
            return verify(cached, spec.sha256)
        except FbtoolError as exc:
            bad_cache = exc
    for d in mirror_dirs():
        p = d / spec.file
        if p.is_file():
            return verify(p, spec.sha256)
    if download and spec.url:
        try:
            return _download(spec, cached)
        except FbtoolError:
            if bad_cache is not None:
                raise bad_cache from None
            raise
    if bad_cache is not None:
        raise bad_cache
    where = ", ".join(str(d) for d in mirror_dirs())
    raise FbtoolError(
        f"weights {spec.file} not found (looked in {cache_dir()} and {where})",
        "set FBTOOL_WEIGHTS_MIRROR to a folder holding it, or pass --weights PATH",
    )


def _download(spec: Weights, target: Path) -> Path:
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(spec.url, timeout=60) as resp, open(tmp, "wb") as f:
                shutil.copyfileobj(resp, f)
            verify(tmp, spec.sha256)
    except FbtoolError:
        raise
    except Exception as exc:
        raise FbtoolError(
            f"could not download {spec.file} from {spec.url}: {exc}",
            "offline? set FBTOOL_WEIGHTS_MIRROR to a folder holding the file",
        ) from None
    return target


def load_state_dict(path: Path):
    """Load a verified state_dict. Only tensors are accepted (weights_only)."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FbtoolError(f"weights {path} could not be read: {(str(exc).splitlines() or [type(exc).__name__])[0][:120]}",
                          "the file is corrupt; fetch it again") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise FbtoolError(f"weights {path} hold no state_dict", "use the published .pth file")
    # Checkpoints saved from nn.DataParallel carry a 'module.' prefix.
    return {k.removeprefix("module."): v for k, v in sd.items()}
