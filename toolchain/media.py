"""Frames from images, GIFs and videos (MP4/H.264), as BGR uint8 arrays.

Images go through OpenCV; GIF and video through PyAV (FFmpeg's decoders, bundled in its wheel).
Bare media names (e.g. `classroom.gif`) are looked up in `$FBTOOL_MEDIA` and ../shared/media.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import FbtoolError

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".gif", ".mp4", ".mkv", ".mov", ".avi", ".webm", ".h264", ".ts"}


def media_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("FBTOOL_MEDIA", "").split(os.pathsep) if p]
    dirs.append(REPO_ROOT.parent / "shared" / "media")
    return dirs


def resolve_media(name: str | os.PathLike) -> Path:
    p = Path(name)
    if p.is_dir():
        raise FbtoolError(f"media {name} is a folder", "give an image, GIF or MP4 file")
    if p.exists():
        return p
    if not p.is_absolute():
        for d in media_dirs():
            if (d / p).exists():
                return d / p
    raise FbtoolError(f"media file {name} does not exist", "give a path, or set FBTOOL_MEDIA to its folder")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    import cv2

    p = resolve_media(path)
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise FbtoolError(f"cannot read image {p}", "is it a JPEG/PNG/BMP file and not truncated?")
    return img


def iter_frames(path: str | os.PathLike, step: int = 1, start: int = 0,
                max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, BGR frame). Images yield one frame (index 0)."""
    if max_frames is not None and max_frames < 1:
        raise FbtoolError(f"max_frames must be at least 1, got {max_frames}", "leave it out for every frame")
    if start < 0 or step < 1:
        raise FbtoolError(f"start must be >= 0 and step >= 1, got {start} and {step}")
    p = resolve_media(path)
    if is_image(p):
        if start == 0:
            yield 0, read_image(p)
        return
    import av

    try:
        container = av.open(str(p))
    except Exception as exc:
        raise FbtoolError(f"cannot open video {p}: {str(exc).splitlines()[0][:100]}",
                          "is it a complete MP4/GIF file?") from None
    n = decoded = 0
    stopped_early = False
    try:
        if not container.streams.video:
            raise FbtoolError(f"{p} has no video stream", "give an image, GIF or MP4 file")
        stream = container.streams.video[0]
        declared = int(stream.frames or 0)
        if declared and start == 0 and max_frames is None:
            _check_complete(p, declared)
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i < start or (i - start) % step:
                continue
            yield i, frame.to_ndarray(format="bgr24")
            n += 1
            if max_frames is not None and n >= max_frames:
                stopped_early = True
                break
    except av.error.FFmpegError as exc:
        raise FbtoolError(f"video {p} is damaged after frame {decoded}: {str(exc).splitlines()[0][:100]}",
                          "the file is truncated or corrupt; re-encode or re-download it") from None
    finally:
        container.close()
    if n == 0 and start == 0:
        raise FbtoolError(f"video {p} holds no decodable frame", "is the file truncated?")
    # A container that promises more frames than its data holds was cut short (a partial download).
    if not stopped_early and declared and decoded < declared:
        raise FbtoolError(f"video {p} is truncated: {decoded} of {declared} frames decodable",
                          "re-download or re-encode the file")


def _check_complete(p: Path, declared: int) -> None:
    """Fail before decoding when the container holds fewer packets than it declares (a cut file).

    Demuxing without decoding costs milliseconds, so a truncated download is refused up front
    instead of after minutes of work on the frames it does hold.
    """
    import av

    packets = 0
    try:
        with av.open(str(p)) as c:
            for packet in c.demux(c.streams.video[0]):
                packets += 1 if packet.size else 0
    except av.error.FFmpegError:
        pass
    if packets < declared:
        raise FbtoolError(f"video {p} is truncated: {packets} of {declared} frames present",
                          "re-download or re-encode the file")


def read_frames(path, step: int = 1, start: int = 0, max_frames: int | None = None) -> list[np.ndarray]:
    return [f for _, f in iter_frames(path, step, start, max_frames)]


def video_info(path) -> dict:
    """fps and frame count (best effort) of a video; images report 1 frame."""
    p = resolve_media(path)
    if is_image(p):
        return {"fps": 0.0, "frames": 1}
    import av

    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise FbtoolError(f"{p} has no video stream", "give an image, GIF or MP4 file with video")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 25)
            return {"fps": fps, "frames": int(s.frames or 0), "width": s.width, "height": s.height}
    except FbtoolError:
        raise
    except Exception as exc:
        raise FbtoolError(f"cannot open video {p}: {(str(exc).splitlines() or [type(exc).__name__])[0][:100]}",
                          "is it a complete MP4/GIF file?") from None
