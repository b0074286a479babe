"""The run folder and its manifest: how stages find each other's artifacts.

`<out>/manifest.json` holds, per stage: the artifacts it wrote (paths relative to the run folder,
with sha256), a fingerprint of what it ran on (provenance), the figures it measured, and when it ran.
Stages never reach into each other: they ask the run folder for an artifact of the table below
(`run.get(SURGERY_ONNX)`, `run.model_onnx()`), the one contract between stages. One freshness rule
(`RunFolder.is_fresh`) decides whether `fbtool run` may skip a stage.

Integrity (docs/hardening.md): one fbtool at a time per run folder (an fcntl lock on
`<out>/.fbtool.lock`, holding the owner's pid for the message); every artifact read through the
manifest must be a regular file inside the run folder (or one fbtool recorded as external) with the
sha256 it was recorded with; temporaries left by a killed run are removed when the next one locks.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FbtoolError
from .fsutil import sha256_file, sweep_stale, write_json

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
DSBLUR_LIB = Artifact("build-parser", "dsblur_lib", "fbtool's DeepStream blur library (nvdsvideotemplate, --dsblur)",
                      ("deepstream",))
INFER_CONFIG = Artifact("deepstream", "infer_config", "nvinfer config", ("validate", "blur"))
APP_CONFIG = Artifact("deepstream", "app_config", "deepstream-app config")
LABELS = Artifact("deepstream", "labels", "nvinfer labels file")
BLUR_APP = Artifact("deepstream", "blur_app", "DeepStream 9.x face-blur app script")
TRACKER_CONFIG = Artifact("deepstream", "tracker_config", "nvtracker low-level (IOU) config for the blur app")
BLUR_INFER_CONFIG = Artifact("deepstream", "blur_infer_config", "nvinfer config of the blur app (blur.score, recall first)",
                             ("validate",))
SGIE_CONFIG = Artifact("deepstream", "sgie_config", "the landmark model's secondary nvinfer config (two-model recipes)")
REPORT_JSON = Artifact("validate", "report_json", "validation report (JSON)")
REPORT_HTML = Artifact("validate", "report_html", "validation report (HTML)")

ARTIFACTS: tuple[Artifact, ...] = (
    EXPORT_ONNX, SURGERY_ONNX, CALIB_SET, CALIB_DATA, CALIB_STATS, CALIB_CACHE, CALIB_CACHE_MAX, INT8_QDQ,
    INT8_QDQ_MAX, FP16_ONNX, ENGINE, ENGINE_MANIFEST, PARSER_LIB, PARSER_HARNESS, PARSER_PARAMS, DSBLUR_LIB,
    INFER_CONFIG, APP_CONFIG, LABELS, BLUR_APP, TRACKER_CONFIG, BLUR_INFER_CONFIG, SGIE_CONFIG, REPORT_JSON, REPORT_HTML,
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


def landmark_run_dir(root: str | os.PathLike, model: str) -> Path:
    """A two-model run keeps the landmark model's artifacts in a run folder of its own inside the run."""
    return Path(root) / model


LOCK = ".fbtool.lock"


class _Held:
    def __init__(self, fd: int, created: bool):
        self.fd, self.count, self.created = fd, 1, created


_held: dict[str, _Held] = {}


def _lock_key(root: Path) -> str:
    return str(root.resolve())


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except (OSError, UnicodeDecodeError):
        return "?"


def acquire(root: str | os.PathLike) -> None:
    """Take the run folder's lock (re-entrant inside one process); FbtoolError if another holds it."""
    import fcntl

    root = Path(root)
    key = _lock_key(root)
    if key in _held:
        _held[key].count += 1
        return
    if root.exists() and not root.is_dir():
        raise FbtoolError(f"run folder {root} is a file, not a folder", "give -o a folder path")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise FbtoolError(f"another fbtool is using this run folder {root} (pid {_read_pid(path)})",
                                  "wait for it to finish, or use another -o folder") from None
            raise
        # The holder before us may have unlinked the file after we opened it: lock the file on disk.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = _Held(fd, created)
    # Nobody else writes here now: what a killed run left behind is stale.
    sweep_stale(root, depth=2)


def release(root: str | os.PathLike) -> None:
    root = Path(root)
    key = _lock_key(root)
    h = _held.get(key)
    if h is None:
        return
    h.count -= 1
    if h.count > 0:
        return
    del _held[key]
    with contextlib.suppress(OSError):
        os.unlink(root / LOCK)  # while still locked: a waiter re-checks the inode (acquire)
    os.close(h.fd)
    if h.created:  # a command that wrote nothing leaves no folder behind
        with contextlib.suppress(OSError):
            root.rmdir()


@contextlib.contextmanager
def run_lock(root: str | os.PathLike) -> Iterator[None]:
    acquire(root)
    try:
        yield
    finally:
        release(root)


def _bad_manifest(path: Path, why: str) -> FbtoolError:
    return FbtoolError(f"{path} {why}", "delete the run folder (or its manifest.json) and run the stages again")


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"schema": SCHEMA, "stages": {}}
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise _bad_manifest(path, "is not a regular file")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad_manifest(path, "is not UTF-8 text") from None
    except json.JSONDecodeError:
        raise _bad_manifest(path, "is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise _bad_manifest(path, "is not an fbtool manifest (no 'stages' mapping)")
    for stage, entry in data["stages"].items():
        arts = entry.get("artifacts") if isinstance(entry, dict) else None
        if not isinstance(arts, dict) or not all(isinstance(a, dict) and isinstance(a.get("path"), str)
                                                  for a in arts.values()):
            raise _bad_manifest(path, f"has a malformed entry for stage '{stage}'")
        if not isinstance(entry.get("info", {}), dict):
            raise _bad_manifest(path, f"has a malformed entry for stage '{stage}'")
    if not isinstance(data.get("chain", {}), dict):
        raise _bad_manifest(path, "has a malformed 'chain' entry")
    return data


# sha256 of files already checked in this process, keyed by what would change with the content.
_sha_cache: dict[tuple, str] = {}


def _sha(p: Path, st: os.stat_result) -> str:
    key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(p)
    return _sha_cache[key]


class RunFolder:
    def __init__(self, out: str | os.PathLike):
        self.root = Path(out)
        if self.root.exists() and not self.root.is_dir():
            raise FbtoolError(f"run folder {self.root} is a file, not a folder", "give -o a folder path")
        self.path = self.root / MANIFEST
        self.data: dict[str, Any] = _load(self.path)

    def file(self, name: str, stage: str | None = None) -> Path:
        """A path for a new file in the run folder; with `stage`, one no other stage's artifact holds."""
        self.root.mkdir(parents=True, exist_ok=True)
        p = self.root / name
        if not _inside(p, self.root):
            raise FbtoolError(f"file name {name!r} leaves the run folder {self.root}", "give a plain file name")
        for other, entry in self.data["stages"].items():
            for key, a in entry["artifacts"].items():
                if other != stage and stage is not None and not a.get("external") and \
                        os.path.normpath(a["path"]) == os.path.normpath(os.path.relpath(p, self.root)):
                    raise FbtoolError(f"{name} is the '{key}' of stage '{other}' in {self.root}; writing it would "
                                      "destroy an input", "choose another file name")
        return p

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
            a: dict[str, Any] = {"sha256": sha256_file(p) if p.is_file() else None}
            if _inside(p, self.root):
                a["path"] = os.path.relpath(p.resolve(), self.root.resolve()) if p.is_absolute() or p.exists() else str(p)
            else:  # e.g. DeepStream files in a --ds-dir of the user's: kept by absolute path, flagged
                a["path"], a["external"] = str(p.resolve()), True
            entry["artifacts"][key] = a
        with run_lock(self.root):
            # Re-read: only this stage's entry is ours to replace (another stage may have recorded since).
            self.data = _load(self.path)
            self.data["stages"][stage] = entry
            # A stage run on its own invalidates what `fbtool run` remembered about it (RunFolder.is_fresh).
            self.data.get("chain", {}).pop(stage, None)
            if recipe is not None:
                self.data["recipe"] = {"name": recipe.name, "hash": recipe.hash, "source": recipe.source}
            write_json(self.path, self.data)

    def stage(self, stage: str) -> dict | None:
        return self.data["stages"].get(stage)

    def path_of(self, stage: str, key: str, a: dict) -> Path:
        raw = a["path"]
        p = Path(raw) if a.get("external") and os.path.isabs(raw) else self.root / raw
        if not a.get("external") and not _inside(p, self.root):
            raise FbtoolError(f"the manifest of {self.root} points '{stage}.{key}' outside the run folder ({raw})",
                              f"run `fbtool {stage} -o {self.root}` again")
        return p

    def _problem(self, p: Path, a: dict) -> str | None:
        """Why the artifact at `p` cannot be used (None: it is the file that was recorded)."""
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return "missing"
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a file"
            return f"is {kind}, not a regular file"
        if a.get("sha256") and _sha(p, st) != a["sha256"]:
            if st.st_size == 0:
                return "is empty (0 bytes), unlike the file the manifest recorded"
            return f"differs from the manifest (sha256 {_sha(p, st)[:12]} != recorded {a['sha256'][:12]})"
        return None

    def artifact(self, stage: str, key: str, required: bool = True) -> Path | None:
        entry = self.stage(stage)
        if entry is None or key not in entry["artifacts"]:
            if not required:
                return None
            raise FbtoolError(f"the run folder {self.root} has no '{key}' from stage '{stage}'",
                              f"run `fbtool {stage} -o {self.root}` first")
        a = entry["artifacts"][key]
        p = self.path_of(stage, key, a)
        why = self._problem(p, a)
        if why == "missing":
            if not required:
                return None
            raise FbtoolError(f"{p} is listed in the manifest but missing", f"run `fbtool {stage} -o {self.root}` again")
        if why is not None:
            raise FbtoolError(f"{p} {why}", f"it changed after `fbtool {stage}` wrote it: run `fbtool {stage} -o "
                              f"{self.root}` again")
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
        """Every artifact of `stage` is the regular file, inside the run folder, it was recorded as."""
        entry = self.stage(stage)
        if not entry:
            return False
        try:
            return all(self._problem(self.path_of(stage, k, a), a) is None for k, a in entry["artifacts"].items())
        except FbtoolError:
            return False

    def is_fresh(self, stage: str, fp: str) -> bool:
        """The one freshness rule: the stage last ran with fingerprint `fp` (toolchain.chain computes it
        from the recipe, the stage's options and the upstream artifacts), its artifacts are intact, and
        it did not record a failure (a failed validate is never up to date)."""
        entry = self.stage(stage) or {}
        if entry.get("info", {}).get("passed") is False:
            return False
        return self.data.get("chain", {}).get(stage) == fp and self.intact(stage)

    def mark_fresh(self, stage: str, fp: str) -> None:
        with run_lock(self.root):
            self.data = _load(self.path)  # the stage itself has just rewritten the manifest
            self.data.setdefault("chain", {})[stage] = fp
            write_json(self.path, self.data)


def _inside(p: Path, root: Path) -> bool:
    try:
        return Path(os.path.abspath(p)).resolve().is_relative_to(Path(os.path.abspath(root)).resolve())
    except (OSError, RuntimeError):
        return False
