"""Call the compiled nvinfer parser from Python, through the C++ harness (plugins/harness).

The harness (built by the same g++, same ABI header) dlopens the parser library, dlsyms the named
function and calls it with real std::vector<NvDsInferLayerInfo> / NvDsInferNetworkInfo /
NvDsInferParseDetectionParams, exactly as nvinfer does, then copies the objects (and masks, which
it frees with delete[]) into plain arrays for ctypes.

Layers are ONE frame's outputs without the batch axis (nvinfer strips it): loc [N, 4], etc.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from ..errors import FbtoolError

MAX_DIMS = 8
# NvDsInferDataType
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3,
          np.dtype(np.int64): 4, np.dtype(np.uint8): 5}
ABI_FIELDS = ("object_size", "mask_info_size", "layer_info_size", "layer_buffer_offset", "mask_offset",
              "network_info_size", "detection_params_size", "dims_size")


class _Layer(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data_type", ctypes.c_int), ("num_dims", ctypes.c_uint),
                ("dims", ctypes.c_uint * MAX_DIMS), ("num_elements", ctypes.c_uint),
                ("buffer", ctypes.c_void_p), ("is_input", ctypes.c_int), ("binding_index", ctypes.c_int)]


class _Object(ctypes.Structure):
    _fields_ = [("class_id", ctypes.c_uint), ("left", ctypes.c_float), ("top", ctypes.c_float),
                ("width", ctypes.c_float), ("height", ctypes.c_float), ("confidence", ctypes.c_float),
                ("rotation_angle", ctypes.c_float), ("mask_width", ctypes.c_uint), ("mask_height", ctypes.c_uint),
                ("mask_size", ctypes.c_uint), ("has_mask", ctypes.c_int)]


def _paths(build_or_paths) -> tuple[Path, Path]:
    if hasattr(build_or_paths, "lib") and hasattr(build_or_paths, "harness"):
        return Path(build_or_paths.lib), Path(build_or_paths.harness)
    if isinstance(build_or_paths, dict):
        return Path(build_or_paths["lib"]), Path(build_or_paths["harness"])
    lib, harness = build_or_paths
    return Path(lib), Path(harness)


class ParserHarness:
    """`ParserHarness(build)` with a ParserBuild, a {"lib", "harness"} dict or a (lib, harness) pair."""

    def __init__(self, build_or_paths):
        self.lib_path, self.harness_path = _paths(build_or_paths)
        for p in (self.lib_path, self.harness_path):
            if not p.is_file():
                raise FbtoolError(f"{p} does not exist", "run `fbtool build-parser` first")
        try:
            self._h = ctypes.CDLL(str(self.harness_path.resolve()), mode=os.RTLD_LOCAL)
        except OSError as exc:
            raise FbtoolError(f"cannot load the parser harness: {exc}", "rebuild with `fbtool build-parser`") from None
        h = self._h
        h.fbt_open.restype = ctypes.c_void_p
        h.fbt_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        h.fbt_close.argtypes = [ctypes.c_void_p]
        h.fbt_has_symbol.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        h.fbt_abi.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.c_int]
        h.fbt_parse.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_Layer), ctypes.c_int,
                                ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_float),
                                ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int]
        h.fbt_result_count.argtypes = [ctypes.c_void_p]
        h.fbt_result_objects.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Object)]
        h.fbt_result_mask.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_int]
        h.fbt_result_free.argtypes = [ctypes.c_void_p]
        err = ctypes.create_string_buffer(512)
        self._lib = h.fbt_open(str(self.lib_path.resolve()).encode(), err, len(err))
        if not self._lib:
            raise FbtoolError(f"dlopen of {self.lib_path} failed: {err.value.decode(errors='replace')}",
                              "rebuild with `fbtool build-parser`")

    # ------------------------------------------------------------------ public API
    def has_symbol(self, func: str) -> bool:
        return bool(self._h.fbt_has_symbol(self._lib, func.encode()))

    def abi(self) -> dict[str, int]:
        """sizeof/offsetof of the ABI structs as the harness (same header as the parser) compiled them."""
        buf = (ctypes.c_uint * len(ABI_FIELDS))()
        self._h.fbt_abi(buf, len(ABI_FIELDS))
        return dict(zip(ABI_FIELDS, (int(v) for v in buf)))

    def parse_bbox(self, layers: dict[str, np.ndarray], net_w: int, net_h: int, thresholds: list[float],
                   func: str = "NvDsInferParseFbtoolFace", order: list[str] | None = None) -> list[dict] | None:
        return self.parse_raw(self._describe(layers, order), net_w, net_h, thresholds, func, mask=False)

    def parse_mask(self, layers: dict[str, np.ndarray], net_w: int, net_h: int, thresholds: list[float],
                   func: str = "NvDsInferParseFbtoolFaceMask", order: list[str] | None = None) -> list[dict] | None:
        return self.parse_raw(self._describe(layers, order), net_w, net_h, thresholds, func, mask=True)

    def parse_raw(self, layers: list[dict], net_w: int, net_h: int, thresholds: list[float], func: str,
                  mask: bool = False, channels: int = 3) -> list[dict] | None:
        """Layers described field by field, for malformed-input tests. Each dict:
        name (str | None), dtype (numpy dtype or NvDsInferDataType int), dims (list, at most 8),
        buffer (ndarray | None: a null pointer), optional num_dims / num_elements overrides
        (default len(dims) / product), is_input (0), binding_index (i)."""
        arr = (_Layer * max(len(layers), 1))()
        keep: list[object] = []  # owners of every pointer handed to C, alive until the call returns
        for i, d in enumerate(layers):
            dims = [int(x) for x in d.get("dims", [])]
            if len(dims) > MAX_DIMS:
                raise ValueError(f"at most {MAX_DIMS} dims, got {len(dims)} (use num_dims to lie about the rank)")
            dt = d.get("dtype", np.float32)
            code = dt if isinstance(dt, int) else DTYPES.get(np.dtype(dt))
            if code is None:
                raise ValueError(f"dtype {dt} has no NvDsInferDataType")
            name = d.get("name")
            name_b = None if name is None else str(name).encode()
            keep.append(name_b)
            buf = d.get("buffer")
            ptr = None
            if buf is not None:
                buf = np.ascontiguousarray(buf)
                keep.append(buf)
                ptr = buf.ctypes.data
            lay = arr[i]
            lay.name = name_b
            lay.data_type = code
            lay.num_dims = int(d.get("num_dims", len(dims)))
            for k, v in enumerate(dims):
                lay.dims[k] = v
            lay.num_elements = int(d["num_elements"]) if "num_elements" in d else int(np.prod(dims, dtype=np.int64))
            lay.buffer = ptr
            lay.is_input = int(d.get("is_input", 0))
            lay.binding_index = int(d.get("binding_index", i + 1))
        thr = (ctypes.c_float * max(len(thresholds), 1))(*[float(t) for t in thresholds])
        result = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        rc = self._h.fbt_parse(self._lib, func.encode(), 1 if mask else 0, arr, len(layers), int(net_w), int(net_h),
                               int(channels), thr, len(thresholds), ctypes.byref(result), err, len(err))
        try:
            if rc == -1:
                raise FbtoolError(f"{self.lib_path.name} has no function {func}",
                                  "check parse-bbox-func-name / parse-bbox-instance-mask-func-name")
            if rc == -2:
                raise FbtoolError(f"{func} threw a C++ exception: {err.value.decode(errors='replace')}")
            if rc == -3:
                raise FbtoolError(f"{func} returned an inconsistent mask: {err.value.decode(errors='replace')}")
            if rc == 0:
                return None
            return self._objects(result, mask)
        finally:
            if result:
                self._h.fbt_result_free(result)

    def close(self) -> None:
        if getattr(self, "_lib", None):
            self._h.fbt_close(self._lib)
            self._lib = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _describe(layers: dict[str, np.ndarray], order: list[str] | None) -> list[dict]:
        names = list(order) if order is not None else list(layers)
        out = []
        for name in names:
            a = np.ascontiguousarray(layers[name])
            if a.dtype not in DTYPES:
                raise ValueError(f"layer {name!r}: dtype {a.dtype} has no NvDsInferDataType")
            out.append({"name": name, "dtype": a.dtype, "dims": list(a.shape), "buffer": a})
        return out

    def _objects(self, result, mask: bool) -> list[dict]:
        n = self._h.fbt_result_count(result)
        objs = (_Object * max(n, 1))()
        if n:
            self._h.fbt_result_objects(result, objs)
        out = []
        for i in range(n):
            o = objs[i]
            d: dict[str, object] = {"class_id": int(o.class_id), "left": float(o.left), "top": float(o.top), "width": float(o.width),
                 "height": float(o.height), "confidence": float(o.confidence),
                 "rotation_angle": float(o.rotation_angle)}
            if mask:
                m = np.zeros((o.mask_height, o.mask_width), dtype=np.float32)
                if m.size:
                    got = self._h.fbt_result_mask(result, i, m.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                                  m.size)
                    if got != m.size:
                        raise FbtoolError(f"mask {i}: the harness copied {got} of {m.size} values")
                d.update(mask=m, mask_width=int(o.mask_width), mask_height=int(o.mask_height),
                         mask_size=int(o.mask_size))
            out.append(d)
        return out


def to_detections(objects: list[dict], with_landmarks: bool = False):
    """Parser objects -> reference Detections (xyxy), for toolchain.compare.metrics and reference.nms."""
    from ..reference.detections import Detections

    if not objects:
        return Detections(np.zeros((0, 4)), np.zeros(0), None)
    b = np.array([[o["left"], o["top"], o["left"] + o["width"], o["top"] + o["height"]] for o in objects],
                 dtype=np.float64)
    s = np.array([o["confidence"] for o in objects], dtype=np.float32)
    c = np.array([o["class_id"] for o in objects], dtype=np.int32)
    return Detections(b, s, None, c)
