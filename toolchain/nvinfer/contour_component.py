"""Builds and drives plugins/contour/ (the FaceMesh box-squaring and contour-mask components) against
DeepStream's own headers, with metadata built by its test driver; no DeepStream library is needed.

The headers come from where the conformance build finds NVIDIA's sources ($DEEPSTREAM_ROOT/sources,
else ../shared/third_party/deepstream-9.1); the build goes to `$FBTOOL_CACHE/contour/<hash>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import FbtoolError
from .conformance import REPO, find_sources

PLUGIN_DIR = REPO / "plugins" / "contour"
PKGS = ("glib-2.0", "gstreamer-1.0")


def missing_reason() -> str | None:
    """Why the components cannot be built here (None: they can)."""
    if find_sources() is None:
        return "no DeepStream headers (neither $DEEPSTREAM_ROOT/sources nor ../shared/third_party/deepstream-9.1)"
    for tool in ("g++", "make", "pkg-config"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["pkg-config", "--exists", *PKGS]).returncode != 0:
        return "GLib/GStreamer development files are missing (apt-get install libglib2.0-dev libgstreamer1.0-dev)"
    return None


def _cache_root() -> Path:
    return Path(os.environ.get("FBTOOL_CACHE", Path.home() / ".cache" / "fbtool")) / "contour"


@lru_cache(maxsize=None)
def build() -> Path:
    """Build (or reuse) the components and their test driver; returns the driver's path."""
    reason = missing_reason()
    if reason:
        raise FbtoolError(f"cannot build plugins/contour here: {reason}", "see docs/deepstream.md, 'Two models'")
    src = find_sources()
    assert src is not None
    h = hashlib.sha256()
    for f in sorted(PLUGIN_DIR.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    h.update(str(src.include).encode())
    out = _cache_root() / h.hexdigest()[:16]
    exe = out / "contour_driver"
    if exe.is_file():
        return exe
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    r = subprocess.run(["make", "-s", "-C", str(PLUGIN_DIR), f"BUILD_DIR={tmp}", f"DS_INCLUDE={src.include}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FbtoolError(f"building plugins/contour failed:\n{r.stderr[-3000:]}", "check the compiler and headers")
    if out.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out)
    return exe


def run_spec(lines: list[str], landmarks: list | None = None) -> list[dict]:
    """Run the driver on a spec (plugins/contour/contour_driver.cpp); `landmarks[i]` ([468, 3] arrays)
    fill the placeholder `{lm<i>}` in the spec's tensor lines. Returns one dict per `print`."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="fbtool-contour-") as tmp:
        subst = {}
        for i, lm in enumerate(landmarks or []):
            f = Path(tmp) / f"lm{i}.bin"
            np.ascontiguousarray(lm, np.float32).reshape(468, 3).tofile(f)
            subst[f"lm{i}"] = str(f)
        spec = Path(tmp) / "spec.txt"
        spec.write_text("\n".join(ln.format(**subst) for ln in lines) + "\n")
        r = subprocess.run([str(build()), str(spec)], capture_output=True, text=True)
    if r.returncode != 0:
        raise FbtoolError(f"plugins/contour's driver failed ({r.returncode}): {r.stderr[-2000:]}")
    return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]


def check_custom_library(build_dir: str | Path) -> Path:
    """Compile plugins/contour/customlib.cpp (the nvdsvideotemplate custom library) against the real
    headers into `build_dir` (a DeepStream host links it: `make -C plugins/contour lib`). Returns the
    object file; raises FbtoolError with the compiler's words when NVIDIA's API does not fit."""
    from .conformance import cuda_includes

    src = find_sources()
    cuda = cuda_includes()
    if src is None or cuda is None:
        raise FbtoolError("no DeepStream or CUDA headers here", "see docs/deepstream.md, 'Two models'")
    videotemplate = src.nvinfer.parent / "gst-nvdsvideotemplate" / "includes"
    r = subprocess.run(["make", "-s", "-C", str(PLUGIN_DIR), f"BUILD_DIR={build_dir}", f"DS_INCLUDE={src.include}",
                        f"VIDEOTEMPLATE_INCLUDE={videotemplate}", "CUDA_INCLUDE=" + " ".join(map(str, cuda)), "check"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise FbtoolError(f"plugins/contour/customlib.cpp does not compile against {src.label}:\n{r.stderr[-3000:]}")
    return Path(build_dir) / "customlib.o"
