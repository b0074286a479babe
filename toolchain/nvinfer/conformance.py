"""NVIDIA's own DeepStream code, compiled from its sources, run on what fbtool emits.

`plugins/conformance/` holds a driver and a Makefile that compile DeepStream's open sources
UNMODIFIED (Gst-nvinfer's element and config parser, nvdsinfer, nvdsosd's element) with a short,
listed set of stubs for closed libraries (docs/deepstream.md). Sources are looked up in this order:
`$DEEPSTREAM_ROOT/sources` (a DeepStream host: `includes/`, `gst-plugins/`, `libs/`), then
`../shared/third_party/deepstream-9.1` beside the checkout (`includes/`, `src/gst-plugins/`,
`src/utils/`). Nothing is copied into the repository; the build goes to `$FBTOOL_CACHE/conformance`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import FbtoolError

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "plugins" / "conformance"
SHARED_DS = REPO.parent / "shared" / "third_party" / "deepstream-9.1"
SHARED_TRT = REPO.parent / "shared" / "third_party" / "tensorrt-10.16" / "include"
PKGS = ("gstreamer-1.0", "gstreamer-base-1.0", "gstreamer-video-1.0")


@dataclass(frozen=True)
class Sources:
    """Where NVIDIA's sources are: `label` says which copy (for messages and reports)."""

    label: str
    include: Path
    nvinfer: Path
    nvdsinfer: Path
    nvdsosd: Path
    app_common: Path
    app: Path
    gst_plugins: Path | None = None  # gst-nvtracker/, gst-nvdsvideotemplate/ (fbtool's DeepStream blur)

    def files(self) -> list[Path]:
        return [self.nvinfer / "gstnvinfer_property_parser.cpp", self.nvinfer / "gstnvinfer.cpp",
                self.app_common / "src" / "deepstream_config_file_parser.c",
                self.app / "deepstream_app_config_parser.c",
                self.nvinfer / "gstnvinfer_meta_utils.cpp", self.nvdsinfer / "nvdsinfer_context_impl.cpp",
                self.nvdsinfer / "nvdsinfer_model_builder.cpp", self.nvdsosd / "gstnvdsosd.c"]


def find_sources() -> Sources | None:
    """`$DEEPSTREAM_ROOT/sources`, else the shared copy; None when neither has the sources."""
    root = os.environ.get("DEEPSTREAM_ROOT")
    candidates = []
    if root:
        s = Path(root) / "sources"
        candidates.append(Sources(f"DeepStream host sources ({s})", s / "includes", s / "gst-plugins" / "gst-nvinfer",
                                  s / "libs" / "nvdsinfer", s / "gst-plugins" / "gst-nvdsosd",
                                  s / "apps" / "apps-common", s / "apps" / "sample_apps" / "deepstream-app",
                                  s / "gst-plugins"))
    s = SHARED_DS
    candidates.append(Sources(f"NVIDIA DeepStream 9.1 sources ({s})", s / "includes", s / "src" / "gst-plugins" / "gst-nvinfer",
                              s / "src" / "utils" / "nvdsinfer", s / "src" / "gst-plugins" / "gst-nvdsosd",
                              s / "src" / "apps" / "common", s / "src" / "apps" / "sample_apps" / "deepstream-app",
                              s / "src" / "gst-plugins"))
    for c in candidates:
        if all(f.is_file() for f in c.files()):
            return c
    return None


def tensorrt_include() -> Path | None:
    for d in (SHARED_TRT, Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include/aarch64-linux-gnu"),
              Path("/usr/include")):
        if (d / "NvInfer.h").is_file():
            return d
    return None


def cuda_includes() -> list[Path] | None:
    """The CUDA toolkit's headers, else the ones of NVIDIA's pip wheels (nvidia-cuda-runtime-cu12 for
    cuda_runtime_api.h, nvidia-cuda-nvcc-cu12 for crt/, nvidia-nvtx-cu12 for nvtx3/)."""
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    if (cuda / "cuda_runtime_api.h").is_file() and (cuda / "nvtx3").is_dir():
        return [cuda]
    found = []
    for mod, probe in (("nvidia.cuda_runtime", "cuda_runtime_api.h"), ("nvidia.cuda_nvcc", "crt/host_defines.h"),
                       ("nvidia.nvtx", "nvtx3/nvToolsExt.h")):
        spec = importlib.util.find_spec(mod)
        paths = [Path(p) / "include" for p in (spec.submodule_search_locations or [])] if spec else []
        hit = next((p for p in paths if (p / probe).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def missing_reason() -> str | None:
    """Why the conformance driver cannot be built here (None: it can)."""
    if find_sources() is None:
        return f"no DeepStream sources (neither $DEEPSTREAM_ROOT/sources nor {SHARED_DS})"
    for tool in ("g++", "gcc", "make", "pkg-config"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["pkg-config", "--exists", *PKGS]).returncode != 0:
        return "GStreamer development files are missing (apt-get install libgstreamer1.0-dev " \
               "libgstreamer-plugins-base1.0-dev libglib2.0-dev)"
    if tensorrt_include() is None:
        return "no TensorRT headers (NvInfer.h)"
    if cuda_includes() is None:
        return "no CUDA headers (/usr/local/cuda/include, or pip install nvidia-cuda-runtime-cu12 " \
               "nvidia-cuda-nvcc-cu12 nvidia-nvtx-cu12)"
    return None


def _cache_root() -> Path:
    return Path(os.environ.get("FBTOOL_CACHE", Path.home() / ".cache" / "fbtool")) / "conformance"


@lru_cache(maxsize=None)
def build() -> Path:
    """Build (or reuse) the conformance driver; returns its path."""
    reason = missing_reason()
    if reason:
        raise FbtoolError(f"cannot build NVIDIA's DeepStream code here: {reason}",
                          "see docs/deepstream.md, 'Conformance against NVIDIA's source'")
    src = find_sources()
    assert src is not None
    cuda, trt = cuda_includes(), tensorrt_include()
    h = hashlib.sha256()
    for f in sorted(PLUGIN_DIR.iterdir()) + sorted((PLUGIN_DIR.parent / "contour").glob("fbtool_contour.*")):
        h.update(f.name.encode() + f.read_bytes())
    h.update(repr((src, cuda, trt)).encode())
    out = _cache_root() / h.hexdigest()[:16]
    exe = out / "conformance"
    if exe.is_file():
        return exe
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    args = ["make", "-s", f"-j{min(4, os.cpu_count() or 1)}", "-C", str(PLUGIN_DIR), f"BUILD_DIR={tmp}",
            f"DS_INCLUDE={src.include}", f"NVINFER_DIR={src.nvinfer}", f"NVDSINFER_DIR={src.nvdsinfer}",
            f"NVDSOSD_DIR={src.nvdsosd}", f"NVLL_OSD_DIR={src.include}", f"APP_COMMON_DIR={src.app_common}",
            f"APP_DIR={src.app}",
            "CUDA_INCLUDE=" + " ".join(map(str, cuda or [])), f"TRT_INCLUDE={trt}"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FbtoolError(f"building NVIDIA's DeepStream code failed:\n{r.stderr[-3000:]}",
                          "check the compiler and the sources' version")
    if out.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(out)
    return exe


def _run(*args: str) -> tuple[dict, str]:
    r = subprocess.run([str(build()), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise FbtoolError(f"NVIDIA's code crashed on {args}: {r.stderr[-2000:]}", "see docs/deepstream.md")
    return json.loads(r.stdout), r.stderr


def parse_nvinfer_config(path: str | Path) -> tuple[dict, str]:
    """Gst-nvinfer's own reading of a config (gst_nvinfer_parse_config_file on a real element):
    the resulting init params and element fields, and everything it printed (errors, unknown keys)."""
    return _run("nvinfer", str(Path(path).resolve()))


def parse_blur_ids(value: str) -> list[list[int]]:
    """nvdsosd's own reading of blur-on-gie-class-ids: one integer list per `;` entry."""
    return _run("osd", value)[0]["entries"]


def parse_app_config(path: str | Path) -> tuple[dict, str]:
    """deepstream-app's own reading of an app config (parse_config_file): the groups as it sees them."""
    return _run("app", str(Path(path).resolve()))


def glib_read(path: str | Path, group: str, key: str, kind: str) -> dict:
    """GLib's GKeyFile reading of one key as int|bool|double|string: {"value": v} or {"error": msg}."""
    return _run("keyfile", str(path), group, key, kind)[0]


def unknown_keys(messages: str) -> list[str]:
    """The lines where NVIDIA's parsers reported an unknown key or group."""
    return [ln for ln in messages.splitlines() if "Unknown" in ln or "unknown" in ln]


def postprocess(config: str | Path, layers: dict, net: tuple[int, int, int], frame: tuple[int, int],
                scale: tuple[float, float], offset: tuple[int, int]) -> dict:
    """NVIDIA's post-processing of one frame's output layers (dict in engine output order, batch axis
    removed): nvdsinfer's InstanceSegmentPostprocessor/DetectPostprocessor with the config's parser,
    then attach_metadata_detector onto a `frame` (w, h) surface. `scale`/`offset` place the frame in
    the network input (nvinfer's get_converted_buffer, which runs the closed GPU scaler).
    Returns {"post": [[class, conf, l, t, w, h], ...], "objects": [NvDsObjectMeta fields]}."""
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="fbtool-conf-") as tmp:
        lines = [f"net {net[0]} {net[1]} {net[2]}", f"frame {frame[0]} {frame[1]}",
                 f"scale {scale[0]!r} {scale[1]!r}", f"offset {offset[0]} {offset[1]}"]
        for i, (name, arr) in enumerate(layers.items()):
            a = np.ascontiguousarray(arr, dtype=np.float32)
            f = Path(tmp) / f"layer{i}.bin"
            a.tofile(f)
            lines.append(f"layer {name} {a.ndim} {' '.join(map(str, a.shape))} {f}")
        spec = Path(tmp) / "spec.txt"
        spec.write_text("\n".join(lines) + "\n")
        out, messages = _run("postproc", str(Path(config).resolve()), str(spec))
    if "error" in out:
        raise FbtoolError(f"NVIDIA's post-processing failed: {out['error']}: {messages[-2000:]}")
    return out


def tensor_meta_contour(config: str | Path, spec: list[str], outputs) -> dict:
    """NVIDIA's attach_tensor_output_meta between fbtool's contour components (tensormeta.cpp): `spec`
    lines (frame, net, params, obj), `outputs` a float32 [N, 1 + 468 * 3] array (presence, landmarks)
    for the first N objects. Returns the objects after fbtool_contour_apply, with what the tensor
    meta NVIDIA attached said (unique_id, letterbox flags)."""
    import tempfile

    import numpy as np

    out = np.ascontiguousarray(outputs, np.float32).reshape(-1, 1 + 468 * 3)
    with tempfile.TemporaryDirectory(prefix="fbtool-conf-") as tmp:
        f = Path(tmp) / "outputs.bin"
        np.concatenate([out[:, 0], out[:, 1:].reshape(-1)]).astype(np.float32).tofile(f)  # host buffer layout
        sp = Path(tmp) / "spec.txt"
        sp.write_text("\n".join(spec + [f"outputs {len(out)} {f}"]) + "\n")
        got, _ = _run("tensormeta", str(Path(config).resolve()), str(sp))
    return got


def check_with_nvidia(path: str | Path) -> tuple[str, list[str]]:
    """Read a config with NVIDIA's own parser: Gst-nvinfer's for a `[property]` file, deepstream-app's
    otherwise. Returns (what was used, errors); raises FbtoolError when the sources are not here."""
    p = Path(path)
    src = find_sources()
    text = p.read_text(errors="replace")
    if "[property]" in text:
        got, messages = parse_nvinfer_config(p)
        used = f"Gst-nvinfer's gst_nvinfer_parse_config_file from {src.label if src else '?'}"
        errs = [ln for ln in messages.splitlines() if ln.strip() and ("rror" in ln or "Unknown" in ln or "failed" in ln)]
        if not got["parsed"] and not errs:
            errs = ["gst_nvinfer_parse_config_file returned FALSE"]
        if got.get("start") is False:
            errs.append(f"gst_nvinfer_start: {got.get('start_error')}")
        if got.get("mode_fallback"):
            errs.append(f"nvdsinfer: {got['mode_fallback']} (the engine would be saved as "
                        f"{got['built_engine_path']}, model-engine-file is {got['modelEngineFilePath']})")
    else:
        got, messages = parse_app_config(p)
        used = f"deepstream-app's parse_config_file from {src.label if src else '?'}"
        errs = [] if got["parsed"] else [ln for ln in messages.splitlines() if ln.strip()] or ["parse_config_file returned FALSE"]
    return used, errs


def gst_properties(element_source: str | Path) -> dict[str, str]:
    """The GObject properties an element's source installs (g_param_spec_<type>("name", ...)): name -> type.
    Read from the text: nvtracker and nvdsvideotemplate link closed libraries, so they are not compiled here."""
    import re

    text = Path(element_source).read_text(errors="replace")
    return {m.group(2): m.group(1) for m in re.finditer(r'g_param_spec_(\w+)\s*\(\s*"([^"]+)"', text)}


def element_source(element: str) -> Path | None:
    """gst-<element>/gst<element>.cpp of the found sources (nvtracker, nvdsvideotemplate), or None."""
    src = find_sources()
    if src is None or src.gst_plugins is None:
        return None
    p = src.gst_plugins / f"gst-{element}" / f"gst{element}.cpp"
    return p if p.is_file() else None
