"""Build the nvinfer custom parser (plugins/) and its test harness with g++, atomically.

The compile flags live in plugins/Makefile (one place); this module generates the model-parameter
header, picks the ABI header (DeepStream's own when installed, else fbtool's documented-layout
copy), runs make in a temporary folder, checks the exported symbols with `nm -D`, and only then
moves the folder into place. A build whose inputs did not change is reused.
"""

from __future__ import annotations

import contextlib
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
from ..fsutil import is_regular, sha256_file, write_json, write_text
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


# make splits variables on spaces and treats ':' and ';' in rules: the build runs in a private folder
# under the system temp dir, whose path must stay within this set, and is then moved into the run folder.
_MAKE_SAFE = re.compile(r"[A-Za-z0-9_./+-]+")


def _make_dir() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="fbtool-parser-"))
    if not _MAKE_SAFE.fullmatch(str(tmp)):
        shutil.rmtree(tmp, ignore_errors=True)
        raise FbtoolError(f"the temporary folder {tmp} has characters make cannot take",
                          "set TMPDIR to a plain path such as /tmp")
    return tmp


def _run_make(cmd: list[str]) -> subprocess.CompletedProcess:
    """make in its own process group, so an interrupt (Ctrl-C, SIGTERM) also ends the compilers it started."""
    import signal

    # Ctrl-C/SIGTERM are held back while make starts: one arriving inside Popen (make, even its compiler,
    # may already run) would leave make's process group unknown, and so running. Once `proc` exists the
    # held signal is let through inside the `try` below, which kills the whole group.
    stop = {signal.SIGINT, signal.SIGTERM}
    held = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, stop))
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            out, err = proc.communicate(timeout=600)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _libs_intact(final: Path, info: dict) -> bool:
    """The built libraries are regular files with the sha256 the build recorded (a truncated .so is
    not "up to date": dlopen would die with SIGBUS)."""
    shas = info.get("sha256") or {}
    for name in (PARSER_LIB, HARNESS_LIB):
        p = final / name
        if not is_regular(p) or shas.get(name) != sha256_file(p):
            return False
    return True


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
        if info.get("fingerprint") == fp and _libs_intact(final, info):
            return _result(final, info, params, rebuilt=False)

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = _make_dir()
    staged: Path | None = None
    try:
        write_text(tmp / HEADER_NAME, header_text)
        cmd = [make, "-C", str(PLUGINS), "--no-print-directory", f"BUILD_DIR={tmp}", f"PARAMS_DIR={tmp}",
               f"DS_MAJOR={ds_major}", f"CXX={cxx}", f"DS_INCLUDE={ds_inc or ''}"]
        if ds_inc is not None:
            # nvdsinfer_custom_impl.h includes NvInfer.h / NvOnnxParser.h, which may pull in CUDA types
            from ..nvinfer.conformance import cuda_includes, tensorrt_include

            extra = [p for p in [tensorrt_include(), *(cuda_includes() or [])] if p is not None]
            if extra:
                cmd.append("EXTRA_INCLUDES=" + " ".join(str(p) for p in extra))
        proc = _run_make(cmd + ["all"])
        log = " ".join(cmd) + "\n" + proc.stdout + proc.stderr
        if proc.returncode != 0:
            write_text(out_dir / "parser-build.log", log)
            raise FbtoolError(f"the parser build failed: {_first_error(proc.stdout + proc.stderr)}",
                              f"full compiler output in {out_dir / 'parser-build.log'}")
        write_text(tmp / "build.log", log)
        syms = check_symbols(tmp / PARSER_LIB)
        layout = compiled_layout(tmp / PARSER_LIB, tmp / HARNESS_LIB)
        info = {"fingerprint": fp, "header": "deepstream" if ds_inc else "fbtool",
                "deepstream_includes": str(ds_inc) if ds_inc else None,
                # the object layout actually compiled (real headers decide it, not --ds-major)
                "ds_major": layout["ds_major"], "object_size": layout["object_size"], "requested_ds_major": ds_major,
                "compiler": _compiler_version(cxx), "symbols": syms, "params": params,
                "parsers": {"bbox": PARSE_BBOX_FUNC, "instance_mask": PARSE_MASK_FUNC},
                "sha256": {n: sha256_file(tmp / n) for n in (PARSER_LIB, HARNESS_LIB)}}
        write_json(tmp / "build_info.json", info)
        # Copy beside the target (same filesystem), then swap folders by rename.
        staged = Path(tempfile.mkdtemp(prefix=f".parser-{os.getpid()}-", dir=out_dir))
        shutil.copytree(tmp, staged, dirs_exist_ok=True)
        _replace_dir(staged, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if staged is not None and staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return _result(final, info, params, rebuilt=True)


# sizeof(NvDsInferObjectDetectionInfo): DeepStream 8.0 has 24 bytes, 9.x adds float rotation_angle.
OBJECT_SIZE_TO_MAJOR = {24: 8, 28: 9}


def compiled_layout(lib: Path, harness: Path) -> dict:
    """The object layout the library was compiled with, measured by the harness (same headers and
    flags): {"object_size", "ds_major"}."""
    from ..nvinfer.harness import ParserHarness

    size = int(ParserHarness((lib, harness)).abi()["object_size"])
    if size not in OBJECT_SIZE_TO_MAJOR:
        raise FbtoolError(f"the parser was compiled with a {size}-byte NvDsInferObjectDetectionInfo, "
                          "neither DeepStream 8.0's (24) nor 9.x's (28)", "check the DeepStream headers")
    return {"object_size": size, "ds_major": OBJECT_SIZE_TO_MAJOR[size]}


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
