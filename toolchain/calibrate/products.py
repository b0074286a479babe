"""The products of one calibration, made and judged the same way for every model family (a detector's
frames or a landmark model's face crops): per INT8 method a TensorRT cache and a Model Optimizer Q/DQ ONNX
that uses the cache's scales, then AutoCast FP16; each through the family's accuracy gate. A product that
fails its gate, or could not be judged, is deleted with its companion (an INT8 model's cache): neither a
model nor its scales may be left where a later stage could deploy them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _key(base: str, method: str, primary: str) -> str:
    return base if method == primary else f"{base}_{method}"


def make_products(run, src: Path, folder: Path, methods: list[str], fp16: bool, stats, calib, fp16_sample,
                  input_name: str, trt_version: str, judge: Callable[[Path, str], dict], step, held_out: str,
                  artifacts: dict, info: dict) -> list[str]:
    """Make and gate every product into `artifacts` / `info["products"]`; returns the failures.

    `calib`: the calibration inputs Model Optimizer reads; `fp16_sample`: a few for AutoCast;
    `judge(path, precision)`: the family's gate figures ({"passed", "failures", ...});
    `held_out`: what the gate runs on, for the progress line (e.g. "40 held-out frames")."""
    from ..trt.calib_cache import ALGORITHMS, write_cache
    from .fp16 import convert_fp16
    from .qdq import quantize_int8

    failed: list[str] = []

    def gate(key: str, path: Path, precision: str, extra: dict, companion: str | None = None) -> None:
        step(f"gate {key} on {held_out}")
        try:
            g = judge(path, precision)
        except BaseException:  # a gate that could not judge leaves no unjudged product behind
            path.unlink(missing_ok=True)
            if companion is not None:
                Path(artifacts.pop(companion)).unlink(missing_ok=True)
            raise
        info["products"][key] = {"file": path.name, "gate": g, **extra}
        if g["passed"]:
            artifacts[key] = path
        else:  # neither the model nor its scales (the cache) may be deployed
            path.unlink(missing_ok=True)
            if companion is not None:
                Path(artifacts.pop(companion)).unlink(missing_ok=True)
            failed.append(f"{key}: {'; '.join(g['failures'])}")

    primary = methods[0] if methods else ""
    for method in methods:
        cache = write_cache(folder / f"int8_calib_{method}.cache", stats.scales(method), trt_version,
                            ALGORITHMS[method])
        artifacts[_key("calib_cache", method, primary)] = cache
        qdq_path = run.file(f"{src.stem}_int8_{method}.onnx")
        step(f"INT8 Q/DQ ({method}, Model Optimizer)")
        q = quantize_int8(src, calib, method, cache, qdq_path)
        gate(_key("int8_qdq", method, primary), qdq_path, f"int8-{method}", {"quantization": q},
             companion=_key("calib_cache", method, primary))
    if fp16:
        f16_path = run.file(f"{src.stem}_fp16.onnx")
        step("FP16 (AutoCast)")
        f = convert_fp16(src, fp16_sample, f16_path, stats, input_name)
        gate("fp16", f16_path, "fp16", {"autocast": f})
    return failed
