"""Build fbtool's DeepStream blur library (plugins/dsblur/: libnvds_fbtool_dsblur.so for nvdsvideotemplate).

It is built where it runs: a DeepStream host, against that install's own headers (`sources/includes`,
`sources/gst-plugins/gst-nvdsvideotemplate/includes`) and libraries (`lib/`: libnvds_meta,
libnvdsgst_meta, libnvdsgst_helper, libnvbufsurface), with nvcc for the blur kernel (blur.cu). Every
prerequisite is checked before anything is compiled; the library lands in `<out>/dsblur/` by rename,
after its factory symbol (CreateCustomAlgoCtx, which gstnvdsvideotemplate's factory dlsym's) is found.
The same sources are compiled against the shared 9.1 headers in CI (nvinfer.dsblur, tests/test_ds_hold.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import FbtoolError
from ..nvinfer.names import DSBLUR_LIB, DSBLUR_SYMBOL
from ..nvinfer.names import deepstream_root as deepstream_root_path
from .build import PLUGINS, _first_error, _make_dir, _run_make, _tool, exported_symbols

DSBLUR = PLUGINS / "dsblur"
DS_LIBS = ("libnvds_meta.so", "libnvdsgst_meta.so", "libnvdsgst_helper.so", "libnvbufsurface.so", "libnvdsbufferpool.so")


def _nvcc() -> str:
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    found = shutil.which(os.environ.get("NVCC", "nvcc")) or (str(cuda / "bin" / "nvcc") if (cuda / "bin" / "nvcc").is_file() else None)
    if found is None:
        raise FbtoolError("nvcc is not installed, needed to build fbtool's DeepStream blur kernel",
                          "install the CUDA toolkit DeepStream uses, or set NVCC / CUDA_HOME")
    return found


def prerequisites(deepstream_root: str | os.PathLike | None = None) -> dict:
    """Everything `make lib` needs, or a one-line FbtoolError naming the first thing missing."""
    root = deepstream_root_path(deepstream_root)
    inc = root / "sources" / "includes"
    vt = root / "sources" / "gst-plugins" / "gst-nvdsvideotemplate" / "includes"
    hint = ("--dsblur builds on a DeepStream host: point --deepstream-root (or DEEPSTREAM_ROOT) at the install "
            "(docs/deepstream.md, 'Held faces and fbtool's blur in DeepStream')")
    if not (inc / "nvdsmeta.h").is_file():
        raise FbtoolError(f"DeepStream's headers are not at {inc} (nvdsmeta.h)", hint)
    if not (vt / "nvdscustomlib_interface.hpp").is_file():
        raise FbtoolError(f"nvdsvideotemplate's interface is not at {vt} (nvdscustomlib_interface.hpp)", hint)
    missing = [n for n in DS_LIBS if not (root / "lib" / n).is_file()]
    if missing:
        raise FbtoolError(f"DeepStream's {missing[0]} is not in {root / 'lib'}", hint)
    if not (DSBLUR / "blur.cu").is_file():
        raise FbtoolError(f"{DSBLUR / 'blur.cu'} (the blur kernel) is missing from this checkout",
                          "update fbtool: the kernel ships with the DeepStream blur (issue 15)")
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    if not (cuda / "include" / "cuda_runtime_api.h").is_file():
        raise FbtoolError(f"the CUDA headers are not in {cuda / 'include'}", "set CUDA_HOME to the CUDA toolkit")
    return {"root": root, "include": inc, "videotemplate": vt, "nvcc": _nvcc(), "cuda": cuda,
            "cxx": _tool(os.environ.get("CXX", "g++"), "build fbtool's DeepStream blur library", "apt-get install g++"),
            "make": _tool("make", "build fbtool's DeepStream blur library", "apt-get install make")}


def build_dsblur(out_dir: str | os.PathLike, deepstream_root: str | os.PathLike | None = None,
                 pre: dict | None = None) -> Path:
    """Build `<out_dir>/dsblur/libnvds_fbtool_dsblur.so`; returns its path."""
    p = pre or prerequisites(deepstream_root)
    final = Path(out_dir).resolve() / "dsblur"
    tmp = _make_dir()
    try:
        cmd = [p["make"], "-C", str(DSBLUR), "--no-print-directory", f"BUILD_DIR={tmp}", f"CXX={p['cxx']}",
               f"NVCC={p['nvcc']}", f"DS_INCLUDE={p['include']}", f"VIDEOTEMPLATE_INCLUDE={p['videotemplate']}",
               f"DS_LIB={p['root'] / 'lib'}", f"CUDA_INCLUDE={p['cuda'] / 'include'}", f"CUDA_LIB={p['cuda'] / 'lib64'}",
               "lib"]
        proc = _run_make(cmd)
        if proc.returncode != 0:
            final.parent.mkdir(parents=True, exist_ok=True)
            log = final.parent / "dsblur-build.log"
            log.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
            raise FbtoolError(f"the DeepStream blur library build failed: {_first_error(proc.stdout + proc.stderr)}",
                              f"full compiler output in {log}")
        lib = tmp / DSBLUR_LIB
        if DSBLUR_SYMBOL not in exported_symbols(lib):
            raise FbtoolError(f"{DSBLUR_LIB} does not export {DSBLUR_SYMBOL}", 'it must be extern "C" (customlib.cpp)')
        final.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkstemp(prefix=f".{DSBLUR_LIB}.", dir=final)[1])
        shutil.copyfile(lib, staged)
        staged.chmod(0o755)
        os.replace(staged, final / DSBLUR_LIB)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / DSBLUR_LIB
