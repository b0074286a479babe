"""The run folder and its manifest: how stages find each other's artifacts.

`<out>/manifest.json` holds, per stage: the artifacts it wrote (paths relative to the run folder,
with sha256), a fingerprint of what it ran on (provenance), the figures it measured, and when it ran.
Stages never reach into each other: they ask the run folder for an artifact of the table below
(`run.get(SURGERY_ONNX)`, `run.model_onnx()`), the one contract between stages. One freshness rule
(`RunFolder.is_fresh`) decides whether `fbtool run` may skip a stage.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FbtoolError
from .fsutil import sha256_file, write_json

MANIFEST = "manifest.json"
SCHEMA = 1


@dataclass(frozen=True)
class Artifact:
    """One file a stage writes into the run folder and the stages that read it."""

    stage: str
    key: str
    what: str
    read_by: tuple[str, ...] = ()

    @property
    def ref(self) -> tuple[str, str]:
        return self.stage, self.key


_MODEL_READERS = ("calibrate", "build-engine", "build-parser", "deepstream", "validate")
EXPORT_ONNX = Artifact("export", "onnx", "ONNX exported from PyTorch", ("surgery", *_MODEL_READERS, "blur"))
SURGERY_ONNX = Artifact("surgery", "onnx", "the surgered ONNX", _MODEL_READERS)
CALIB_SET = Artifact("calibrate", "calib_set", "calibration set manifest (calibset)", ("build-engine",))
CALIB_DATA = Artifact("calibrate", "calib_data", "calibration set canvases (calibset)", ("build-engine",))
CALIB_STATS = Artifact("calibrate", "stats", "activation statistics")
CALIB_CACHE = Artifact("calibrate", "calib_cache", "TensorRT legacy INT8 cache, first method",
                       ("build-engine", "deepstream"))
CALIB_CACHE_MAX = Artifact("calibrate", "calib_cache_max", "TensorRT legacy INT8 cache, max method (second)")
INT8_QDQ = Artifact("calibrate", "int8_qdq", "INT8 Q/DQ ONNX, first method", ("build-engine", "deepstream", "validate"))
INT8_QDQ_MAX = Artifact("calibrate", "int8_qdq_max", "INT8 Q/DQ ONNX, max method (second)", ("validate",))
FP16_ONNX = Artifact("calibrate", "fp16", "FP16 (AutoCast) ONNX", ("build-engine", "validate"))
ENGINE = Artifact("build-engine", "engine", "TensorRT engine, named as nvinfer names it",
                  ("deepstream", "validate", "blur"))
ENGINE_MANIFEST = Artifact("build-engine", "engine_manifest", "what the engine was built with", ("deepstream",))
PARSER_LIB = Artifact("build-parser", "lib", "nvinfer custom parser library", ("deepstream", "validate"))
PARSER_HARNESS = Artifact("build-parser", "harness", "C harness that drives the parser from Python",
                          ("validate", "blur"))
PARSER_PARAMS = Artifact("build-parser", "params_header", "model parameters compiled into the parser")
INFER_CONFIG = Artifact("deepstream", "infer_config", "nvinfer config", ("validate", "blur"))
APP_CONFIG = Artifact("deepstream", "app_config", "deepstream-app config")
LABELS = Artifact("deepstream", "labels", "nvinfer labels file")
BLUR_APP = Artifact("deepstream", "blur_app", "DeepStream 9.x face-blur app script")
REPORT_JSON = Artifact("validate", "report_json", "validation report (JSON)")
REPORT_HTML = Artifact("validate", "report_html", "validation report (HTML)")

ARTIFACTS: tuple[Artifact, ...] = (
    EXPORT_ONNX, SURGERY_ONNX, CALIB_SET, CALIB_DATA, CALIB_STATS, CALIB_CACHE, CALIB_CACHE_MAX, INT8_QDQ,
    INT8_QDQ_MAX, FP16_ONNX, ENGINE, ENGINE_MANIFEST, PARSER_LIB, PARSER_HARNESS, PARSER_PARAMS, INFER_CONFIG,
    APP_CONFIG, LABELS, BLUR_APP, REPORT_JSON, REPORT_HTML,
)
# The model every stage after surgery works on: surgery's ONNX when the run has one, else export's.
MODEL_ONNX = (SURGERY_ONNX, EXPORT_ONNX)


def fingerprint(*parts: Any) -> str:
    """Stable hash of JSON-able parts and files (a Path part contributes its sha256)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(sha256_file(p).encode() if p.is_file() else f"missing:{p}".encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class RunFolder:
    def __init__(self, out: str | os.PathLike):
        self.root = Path(out)
        self.path = self.root / MANIFEST
        self.data: dict[str, Any] = {"schema": SCHEMA, "stages": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise FbtoolError(f"{self.path} is not valid JSON", "delete the run folder and start again") from None

    def file(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / name

    def record(self, stage: str, artifacts: dict[str, str | os.PathLike], info: dict | None = None,
               inputs: str | None = None, recipe=None) -> None:
        entry: dict[str, Any] = {
            "artifacts": {},
            "info": info or {},
            "inputs": inputs,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        for key, p in artifacts.items():
            p = Path(p)
            rel = os.path.relpath(p, self.root) if p.is_absolute() or p.exists() else str(p)
            entry["artifacts"][key] = {"path": rel, "sha256": sha256_file(p) if p.is_file() else None}
        self.data["stages"][stage] = entry
        if recipe is not None:
            self.data["recipe"] = {"name": recipe.name, "hash": recipe.hash, "source": recipe.source}
        write_json(self.path, self.data)

    def stage(self, stage: str) -> dict | None:
        return self.data["stages"].get(stage)

    def artifact(self, stage: str, key: str, required: bool = True) -> Path | None:
        entry = self.stage(stage)
        if entry is None or key not in entry["artifacts"]:
            if not required:
                return None
            raise FbtoolError(f"the run folder {self.root} has no '{key}' from stage '{stage}'",
                              f"run `fbtool {stage} -o {self.root}` first")
        p = self.root / entry["artifacts"][key]["path"]
        if not p.exists():
            if not required:
                return None
            raise FbtoolError(f"{p} is listed in the manifest but missing", f"run `fbtool {stage}` again")
        return p

    def get(self, art: Artifact, required: bool = False) -> Path | None:
        """The artifact's file, None when the run has none (or raise, with required)."""
        return self.artifact(art.stage, art.key, required=required)

    def model_onnx(self, required: bool = True) -> Path | None:
        """Surgery's ONNX when the run has one, else export's (MODEL_ONNX)."""
        for art in MODEL_ONNX:
            p = self.get(art)
            if p is not None:
                return p
        return self.get(MODEL_ONNX[-1], required=required)

    def intact(self, stage: str) -> bool:
        """Every artifact the stage recorded is still there with the sha256 it had."""
        entry = self.stage(stage)
        if not entry:
            return False
        for a in entry["artifacts"].values():
            p = self.root / a["path"]
            if not p.exists() or (a.get("sha256") and p.is_file() and sha256_file(p) != a["sha256"]):
                return False
        return True

    def is_fresh(self, stage: str, fp: str) -> bool:
        """The one freshness rule: the stage last ran with fingerprint `fp` (toolchain.chain computes it
        from the recipe, the stage's options and the upstream artifacts) and its artifacts are intact."""
        return self.data.get("chain", {}).get(stage) == fp and self.intact(stage)

    def mark_fresh(self, stage: str, fp: str) -> None:
        self.data.setdefault("chain", {})[stage] = fp
        write_json(self.path, self.data)
