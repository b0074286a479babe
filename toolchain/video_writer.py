"""H.264 MP4 writing through PyAV, atomically (a temporary file renamed on success)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import FbtoolError
from .fsutil import temp_beside


def check_encodable(frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    if h < 2 or w < 2:  # yuv420p needs even sides: a 1-pixel side would become 0
        raise FbtoolError(f"the frames are {w}x{h} pixels, too small to encode as H.264",
                          "give a video of at least 2x2 pixels")


class VideoWriter:
    def __init__(self, path, fps: float | None = None, source=None, codec: str = "libx264", crf: int = 18):
        self.path = Path(path)
        if fps is None and source is not None:
            from .media import video_info

            fps = video_info(source).get("fps") or 25.0
        self.fps = Fraction(fps or 25.0).limit_denominator(1001)
        self.codec, self.crf = codec, crf
        self.container = self.stream = None
        self.frames = 0

    def __enter__(self):
        self.tmp = temp_beside(self.path.with_suffix(".mp4"))
        return self

    def encoder_options(self) -> dict[str, str]:
        return {"crf": str(self.crf), "preset": "veryfast"}

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        if self.container is None:
            check_encodable(frame_bgr)
            h, w = frame_bgr.shape[:2]
            self.container = av.open(str(self.tmp), mode="w", format="mp4")
            self.stream = self.container.add_stream(self.codec, rate=self.fps)
            self.stream.width, self.stream.height = w - w % 2, h - h % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = self.encoder_options()
        frame_bgr = frame_bgr[: self.stream.height, : self.stream.width]
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.container is not None:
                if exc_type is None:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
                self.container.close()
            if exc_type is None:
                if self.frames == 0:
                    raise FbtoolError(f"no frame was written to {self.path}", "is the input empty?")
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return False
