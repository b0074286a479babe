"""Build the nvinfer custom parser (plugins/) and its test harness with g++, atomically.

The compile flags live in plugins/Makefile (one place); this module generates the model-parameter
header, picks the ABI header (DeepStream's own when installed, else fbtool's documented-layout
copy), runs make in a temporary folder, checks the exported symbols with `nm -D`, and only then
moves the folder into place. A build whose inputs did not change is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import write_json, write_text
from ..nvinfer.names import HARNESS_LIB, PARSE_BBOX_FUNC, PARSE_MASK_FUNC, PARSER_LIB, PARSER_SYMBOLS
from ..nvinfer.names import deepstream_root as deepstream_root_path
from .params import HEADER_NAME, model_params, render_header

PLUGINS = Path(__file__).resolve().parent.parent.parent / "plugins"
SOURCES = ("Makefile", "src/nvdsparse_fbtool.cpp", "src/exports.map", "include/fbtool_nvdsinfer.h",
           "harness/harness.cpp", "harness/exports.map")


@dataclass
class ParserBuild:
    lib: Path  # libnvdsinfer_fbtool.so: custom-lib-path for nvinfer
    harness: Path  # libfbtool_harness.so: drives `lib` from Python (toolchain.nvinfer.harness)
    header: str  # "deepstream" (real headers) | "fbtool" (own ABI header)
    symbols: list[str] = field(default_factory=list)
    ds_major: int = 9
    params_header: Path | None = None
    params: dict = field(default_factory=dict)
    fingerprint: str = ""
    rebuilt: bool = True


def find_deepstream_includes(deepstream_root: str | os.PathLike | None = None) -> Path | None:
    """sources/includes of a DeepStream install holding nvdsinfer_custom_impl.h, or None.

    An explicitly given root that lacks the headers is an error; the default one may be absent."""
    explicit = deepstream_root is not None
    root = deepstream_root_path(deepstream_root)
    inc = root / "sources" / "includes"
    if (inc / "nvdsinfer_custom_impl.h").is_file():
        return inc
    if explicit:
        raise FbtoolError(f"{inc}/nvdsinfer_custom_impl.h does not exist",
                          "point --deepstream-root at the DeepStream install (the folder holding sources/)")
    return None


def _tool(name: str, purpose: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FbtoolError(f"{name} is not installed, needed to {purpose}", hint)
    return path


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def exported_symbols(lib: Path) -> list[str]:
    """Defined function symbols of the dynamic symbol table (`nm -D --defined-only`)."""
    nm = _tool("nm", "check the parser's exported symbols", "apt-get install binutils")
    out = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise FbtoolError(f"nm could not read {lib}: {out.stderr.strip()[:200]}")
    return sorted(parts[2] for parts in (ln.split() for ln in out.stdout.splitlines())
                  if len(parts) == 3 and parts[1] in ("T", "t", "W"))


def check_symbols(lib: Path) -> list[str]:
    syms = exported_symbols(lib)
    missing = [s for s in PARSER_SYMBOLS if s not in syms]
    if missing:
        mangled = [s for s in syms if any(m in s for m in missing)]
        raise FbtoolError(f"{lib.name} does not export {', '.join(missing)}"
                          + (f" (found mangled {mangled[0]})" if mangled else ""),
                          'the parser functions must be extern "C" with default visibility')
    return syms


def _fingerprint(header_text: str, cxx: str, ds_major: int, ds_inc: Path | None) -> str:
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode())
        h.update((PLUGINS / rel).read_bytes())
    h.update(header_text.encode())
    h.update(json.dumps([_compiler_version(cxx), ds_major, str(ds_inc or "")]).encode())
    if ds_inc is not None:
        h.update((ds_inc / "nvdsinfer_custom_impl.h").read_bytes())
    return h.hexdigest()[:16]


def _first_error(log: str) -> str:
    for line in log.splitlines():
        if re.search(r"\berror\b", line):
            return line.strip()[:240]
    return (log.strip().splitlines() or ["no output"])[-1][:240]


def build_parser(recipe, out_dir: str | os.PathLike, deepstream_root: str | os.PathLike | None = None,
                 ds_major: int = 9, meta: dict | None = None, force: bool = False) -> ParserBuild:
    """Build into `<out_dir>/parser/`. `meta`: the ONNX fbtool.* metadata (else the recipe is the source)."""
    if ds_major not in (8, 9):
        raise FbtoolError(f"ds_major must be 8 or 9, got {ds_major}", "8: DeepStream 8.0 layout, 9: 9.x layout")
    if isinstance(recipe, (str, os.PathLike)):
        from ..recipe import load_recipe

        recipe = load_recipe(Path(recipe))
    cxx = _tool(os.environ.get("CXX", "g++"), "build the DeepStream parser",
                "apt-get install g++ (DeepStream parsers must be built with g++, libstdc++ C++11 ABI)")
    make = _tool("make", "build the DeepStream parser", "apt-get install make")
    ds_inc = find_deepstream_includes(deepstream_root)
    params = model_params(recipe, meta)
    header_text = render_header(params)
    fp = _fingerprint(header_text, cxx, ds_major, ds_inc)

    out_dir = Path(out_dir).resolve()  # make runs in plugins/: relative paths would point elsewhere
    final = out_dir / "parser"
    info_path = final / "build_info.json"
    if not force and info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            info = {}
        if info.get("fingerprint") == fp and (final / PARSER_LIB).is_file() and (final / HARNESS_LIB).is_file():
            return _result(final, info, params, rebuilt=False)

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".parser-", dir=out_dir))
    try:
        write_text(tmp / HEADER_NAME, header_text)
        cmd = [make, "-C", str(PLUGINS), "--no-print-directory", f"BUILD_DIR={tmp}", f"PARAMS_DIR={tmp}",
               f"DS_MAJOR={ds_major}", f"CXX={cxx}", f"DS_INCLUDE={ds_inc or ''}"]
        cuda_inc = Path("/usr/local/cuda/include")
        if ds_inc is not None and cuda_inc.is_dir():
            cmd.append(f"EXTRA_INCLUDES={cuda_inc}")  # nvdsinfer headers may pull in CUDA types
        proc = subprocess.run(cmd + ["all"], capture_output=True, text=True, timeout=600)
        log = " ".join(cmd) + "\n" + proc.stdout + proc.stderr
        if proc.returncode != 0:
            write_text(out_dir / "parser-build.log", log)
            raise FbtoolError(f"the parser build failed: {_first_error(proc.stdout + proc.stderr)}",
                              f"full compiler output in {out_dir / 'parser-build.log'}")
        write_text(tmp / "build.log", log)
        syms = check_symbols(tmp / PARSER_LIB)
        info = {"fingerprint": fp, "header": "deepstream" if ds_inc else "fbtool",
                "deepstream_includes": str(ds_inc) if ds_inc else None, "ds_major": ds_major,
                "compiler": _compiler_version(cxx), "symbols": syms, "params": params,
                "parsers": {"bbox": PARSE_BBOX_FUNC, "instance_mask": PARSE_MASK_FUNC}}
        write_json(tmp / "build_info.json", info)
        _replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _result(final, info, params, rebuilt=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished build folder over the old one (the old one is removed only after)."""
    src.chmod(0o755)  # mkdtemp makes 0700 folders
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}-old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _result(folder: Path, info: dict, params: dict, rebuilt: bool) -> ParserBuild:
    return ParserBuild(lib=folder / PARSER_LIB, harness=folder / HARNESS_LIB, header=info["header"],
                       symbols=[s for s in info["symbols"] if s in PARSER_SYMBOLS], ds_major=info["ds_major"],
                       params_header=folder / HEADER_NAME, params=params, fingerprint=info["fingerprint"],
                       rebuilt=rebuilt)
