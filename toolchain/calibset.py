"""Calibration sets: real frames, preprocessed by the reference (nvinfer's steps), with their own manifest.

Storage: `<run>/calib/calib_set.npy` holds the nvinfer-scaled uint8 canvases [N, H, W, 3] (BGR, the
letterboxed frame at network size); the loader applies `y = scale * (x - mean[c])` with
toolchain.reference.preprocess.normalize, the very function `preprocess()` uses, so a loaded tensor is
bit-identical to `preprocess(frame, recipe)`. Storing the canvas instead of float32 makes the set 4x
smaller; `calib_manifest.json` ties it to `recipe.preprocess_hash()` (which covers both steps), and a
set whose hash differs from the recipe's is refused.

Calibration and validation frames come from disjoint clips, checked by file content (sha256), so a
renamed copy of a validation clip cannot leak into calibration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FbtoolError
from .fsutil import atomic_path, sha256_file, write_json
from .media import resolve_media, video_info
from .reference.preprocess import normalize, scale_frame

SET_FILE = "calib_set.npy"
MANIFEST_FILE = "calib_manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Frame:
    source: str  # as the user named it (bare media name or path)
    sha256: str  # content hash of the source file
    index: int  # frame index in the source
    image: np.ndarray  # BGR uint8 [h, w, 3]


def _source_files(sources: Sequence[str | os.PathLike]) -> list[tuple[str, Path, str]]:
    if not sources:
        raise FbtoolError("no calibration source given", "pass --source FILE or list calibration_media in the recipe")
    out = []
    for s in sources:
        p = resolve_media(s)
        if not p.is_file():
            raise FbtoolError(f"calibration source {s} is not a file", "give image, GIF or MP4 files")
        if p.stat().st_size == 0:
            raise FbtoolError(f"calibration source {p} is empty (0 bytes)", "give a complete image, GIF or MP4 file")
        out.append((str(s), p, sha256_file(p)))
    return out


def check_disjoint(calibration: Sequence[str | os.PathLike], validation: Sequence[str | os.PathLike]) -> None:
    """Refuse a calibration source that is also a validation source (same file content)."""
    val = {sha256_file(resolve_media(v)): str(v) for v in validation}
    for name, _, sha in _source_files(calibration):
        if sha in val:
            raise FbtoolError(f"calibration source {name} is also a validation clip ({val[sha]})",
                              "calibration and accuracy-gate frames must come from different clips")


def spread_frames(sources: Sequence[str | os.PathLike], count: int) -> list[Frame]:
    """About `count` frames: one per image, the rest spread evenly over each video's length, each with its
    source's sha256 (for the held-out check). toolchain.frames.sample_frames takes every `step`-th frame
    of each clip instead."""
    if count < 1:
        raise FbtoolError(f"frame count must be >= 1, got {count}")
    from .media import is_image, iter_frames

    files = _source_files(sources)
    # An image gives one frame; the rest of the count is shared evenly by the videos.
    images = [is_image(p) for _, p, _ in files]
    n_vid = len(files) - sum(images)
    rest = max(count - sum(images), 0)
    shares, k = [], 0
    for img in images:
        if img:
            shares.append(1)
        else:
            shares.append(rest // n_vid + (1 if k < rest % n_vid else 0))
            k += 1
    frames: list[Frame] = []
    for (name, path, sha), want in zip(files, shares):
        if want == 0:
            continue
        total = video_info(path).get("frames") or 0
        step = max(1, total // want) if total else 1
        try:
            got = [Frame(name, sha, idx, img) for idx, img in iter_frames(path, step=step, max_frames=want)]
        except FbtoolError:
            raise
        except Exception as exc:  # a decoder error that media.py did not anticipate
            raise FbtoolError(f"cannot read calibration source {path}: {str(exc).splitlines()[0][:100]}",
                              "give a complete image, GIF or MP4 file") from None
        if not got:
            raise FbtoolError(f"calibration source {path} gave no frame", "is the file truncated?")
        frames += got
    return frames


class CalibrationSet:
    """Preprocessed calibration frames. Iterating yields float32 NCHW batches (re-iterable)."""

    def __init__(self, canvases: np.ndarray, manifest: dict, recipe, batch_size: int = 8):
        self.canvases = canvases
        self.manifest = manifest
        self.recipe = recipe
        self.batch_size = batch_size

    def __len__(self) -> int:
        return int(self.canvases.shape[0])

    def tensors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        p = self.recipe.preprocess
        return np.stack([normalize(c, p.color, p.mean, p.scale) for c in self.canvases[start:stop]])

    def batches(self, batch_size: int | None = None) -> Iterator[np.ndarray]:
        b = batch_size or self.batch_size
        for i in range(0, len(self), b):
            yield self.tensors(i, i + b)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.batches()

    def array(self) -> np.ndarray:
        return self.tensors()

    @property
    def source_hashes(self) -> set[str]:
        return {f["sha256"] for f in self.manifest["frames"]}


def build_calibration_set(recipe, sources: Sequence[str | os.PathLike], count: int, folder: str | os.PathLike,
                          validation: Sequence[str | os.PathLike] = ()) -> CalibrationSet:
    """Sample, preprocess and store a calibration set under `folder`. Returns it loaded."""
    check_disjoint(sources, validation)
    frames = spread_frames(sources, count)
    p, inp = recipe.preprocess, recipe.input
    canvases = np.stack([scale_frame(f.image, inp.width, inp.height, p.letterbox, p.symmetric_padding,
                                     p.interpolation)[0] for f in frames])
    manifest = {
        "format": FORMAT,
        "recipe": recipe.name,
        "preprocess_hash": recipe.preprocess_hash(),
        "preprocess": recipe.to_dict()["preprocess"],
        "input": {"name": inp.name, "width": inp.width, "height": inp.height},
        "storage": "uint8 BGR canvas [N,H,W,3] after nvinfer scaling/letterbox; loader applies scale*(x-mean)",
        "count": len(frames),
        "sources": sorted({(f.source, f.sha256) for f in frames}),
        "frames": [{"source": f.source, "sha256": f.sha256, "index": f.index} for f in frames],
        "validation_sources": [str(v) for v in validation],
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / SET_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, canvases)
    write_json(folder / MANIFEST_FILE, manifest)
    return CalibrationSet(canvases, manifest, recipe)


def load_calibration_set(path: str | os.PathLike, recipe, batch_size: int = 8) -> CalibrationSet:
    """Load a stored set (its folder or its calib_manifest.json); refuse one made for other preprocessing."""
    path = Path(path)
    folder = path.parent if path.name == MANIFEST_FILE else path
    mpath, spath = folder / MANIFEST_FILE, folder / SET_FILE
    if not mpath.is_file() or not spath.is_file():
        raise FbtoolError(f"no calibration set in {folder}", "run `fbtool calibrate` to make one")
    try:
        manifest = json.loads(mpath.read_text())
        canvases = np.load(spath, mmap_mode="r")
    except (json.JSONDecodeError, ValueError, OSError) as exc:
        raise FbtoolError(f"calibration set in {folder} is unreadable: {str(exc).splitlines()[0][:100]}",
                          "run `fbtool calibrate` again") from None
    want = recipe.preprocess_hash()
    if manifest.get("preprocess_hash") != want:
        raise FbtoolError(f"calibration set {folder} was made with preprocessing hash "
                          f"{manifest.get('preprocess_hash')}, the recipe's is {want}",
                          "the recipe's preprocessing or input size changed: run `fbtool calibrate` again")
    shape = (manifest.get("count"), recipe.input.height, recipe.input.width, 3)
    if canvases.shape != shape or canvases.dtype != np.uint8:
        raise FbtoolError(f"calibration set {spath} holds {canvases.dtype} {canvases.shape}, expected uint8 {shape}",
                          "run `fbtool calibrate` again")
    return CalibrationSet(canvases, manifest, recipe, batch_size)
