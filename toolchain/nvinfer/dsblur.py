"""fbtool's DeepStream blur component (plugins/dsblur/) compiled against NVIDIA's real headers.

Two builds from the same Makefile, neither needing DeepStream itself:
- `hold_driver`: the hold/mask component (ds_hold.cpp) on DeepStream metadata structs built in the
  test (nvdsmeta.h, nvds_tracker_meta.h), with the libnvds_meta stubs of plugins/conformance/stubs.cpp;
  `run_hold(spec)` returns what it blurs per frame (tests/test_ds_hold.py compares it with
  toolchain/nvinfer/emulation/tracker.py).
- `check`: customlib.cpp compiled (-c) against gst-nvdsvideotemplate's IDSCustomLibrary and the CUDA
  headers, so that a change of NVIDIA's interface fails a test.
Headers come from the same places as the conformance driver (nvinfer.conformance.find_sources).
The library itself (`make lib`, nvcc + DeepStream's libraries) is built by `fbtool build-parser --dsblur`.
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
from . import conformance

DSBLUR_DIR = conformance.REPO / "plugins" / "dsblur"


def make_vars(src: conformance.Sources) -> list[str]:
    """The Makefile's header locations for these sources."""
    cuda, trt = conformance.cuda_includes(), conformance.tensorrt_include()
    gst = src.gst_plugins or src.nvinfer.parent
    return [f"DS_INCLUDE={src.include}", f"NVDSINFER_DIR={src.nvdsinfer}",
            f"VIDEOTEMPLATE_INCLUDE={gst / 'gst-nvdsvideotemplate' / 'includes'}",
            "CUDA_INCLUDE=" + " ".join(map(str, cuda or [])), f"TRT_INCLUDE={trt or ''}"]


def missing_reason() -> str | None:
    """Why the component cannot be compiled here against NVIDIA's headers (None: it can)."""
    reason = conformance.missing_reason()
    if reason:
        return reason
    src = conformance.find_sources()
    gst = src.gst_plugins if src and src.gst_plugins else None
    if gst is None or not (gst / "gst-nvdsvideotemplate" / "includes" / "nvdscustomlib_interface.hpp").is_file():
        return "no gst-nvdsvideotemplate sources (nvdscustomlib_interface.hpp) beside the DeepStream headers"
    return None


@lru_cache(maxsize=None)
def build(target: str) -> Path:
    """Build `target` ("hold_driver" or "check") into the cache; returns its build folder."""
    reason = missing_reason()
    if reason:
        raise FbtoolError(f"cannot compile fbtool's DeepStream blur component here: {reason}",
                          "see docs/deepstream.md, 'Held faces and fbtool's blur in DeepStream'")
    src = conformance.find_sources()
    assert src is not None
    args = make_vars(src)
    h = hashlib.sha256(repr((target, args)).encode())
    for d in (DSBLUR_DIR, conformance.PLUGIN_DIR):
        for f in sorted(d.iterdir()):
            if f.is_file():
                h.update(f.name.encode() + f.read_bytes())
    out = Path(os.environ.get("FBTOOL_CACHE", Path.home() / ".cache" / "fbtool")) / "dsblur" / f"{target}-{h.hexdigest()[:16]}"
    if (out / ".done").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target}-", dir=out.parent))
    r = subprocess.run(["make", "-s", "-C", str(DSBLUR_DIR), f"BUILD_DIR={tmp}", *args, target],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FbtoolError(f"compiling plugins/dsblur ({target}) against NVIDIA's headers failed:\n{r.stderr[-3000:]}",
                          "the DeepStream headers changed, or the component's code is wrong")
    (tmp / ".done").write_text(r.stderr)
    if out.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out)
    return out


def run_hold(spec: str) -> list[dict]:
    """The compiled component on a spec (plugins/dsblur/hold_driver.cpp): one dict per frame run."""
    exe = build("hold_driver") / "hold_driver"
    r = subprocess.run([str(exe)], input=spec, capture_output=True, text=True)
    if r.returncode != 0:
        raise FbtoolError(f"hold_driver failed ({r.returncode}): {r.stderr[-2000:]}", "see plugins/dsblur/hold_driver.cpp")
    return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]


def link_check() -> tuple[list[str], list[str]]:
    """Link customlib.o + ds_hold.o as the shared library (no blur.o: nvcc is not needed here) with
    --no-undefined against GLib/GStreamer only. Returns (the symbols left unresolved, which DeepStream's
    and CUDA's libraries must provide; the defined functions it exports)."""
    import re

    from .conformance import PKGS

    folder = build("check")
    objs = [str(folder / "customlib.o"), str(folder / "ds_hold.o")]
    libs = subprocess.run(["pkg-config", "--libs", *PKGS], capture_output=True, text=True).stdout.split()
    with tempfile.TemporaryDirectory(prefix="fbtool-dsblur-link-") as tmp:
        strict = subprocess.run(["g++", "-shared", "-o", f"{tmp}/strict.so", *objs, "-Wl,--no-undefined", *libs,
                                 "-ldl", "-lpthread"], capture_output=True, text=True)
        missing = sorted(set(re.findall(r"undefined reference to `([^']+)'", strict.stderr)))
        lib = f"{tmp}/libnvds_fbtool_dsblur.so"
        r = subprocess.run(["g++", "-shared", "-o", lib, *objs, *libs], capture_output=True, text=True)
        if r.returncode != 0:
            raise FbtoolError(f"linking plugins/dsblur failed: {r.stderr[-2000:]}")
        nm = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
    exported = sorted(p[2] for p in (ln.split() for ln in nm.splitlines()) if len(p) == 3 and p[1] == "T")
    return missing, exported
