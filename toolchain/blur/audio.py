"""Keep the input's audio: remux the blurred video with the source's audio stream (PyAV, no re-encode).

The blur job encodes video only; when the source has an audio stream its packets are copied into a
new MP4 beside the output (the audio of the frames' time window when --start/--max-frames cut the
clip), then renamed over it. Codecs MP4 cannot hold are transcoded to AAC.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from ..errors import FbtoolError
from ..fsutil import temp_beside


def has_audio(path) -> bool:
    import av

    try:
        with av.open(str(path)) as c:
            return bool(c.streams.audio)
    except Exception:
        return False


def _copy(video: Path, source: Path, dst: Path, t0: float, t1: float | None, transcode: bool) -> int:
    import av

    n = 0
    with av.open(str(video)) as vin, av.open(str(source)) as ain, av.open(str(dst), mode="w", format="mp4") as out:
        vs_in, as_in = vin.streams.video[0], ain.streams.audio[0]
        vs = out.add_stream_from_template(vs_in)
        if transcode:
            a_out = out.add_stream("aac", rate=as_in.rate or 48000)
        else:
            a_out = out.add_stream_from_template(as_in)
        for p in vin.demux(vs_in):
            if p.dts is None:
                continue
            p.stream = vs
            out.mux(p)
        if t0 > 0:
            ain.seek(int(t0 / as_in.time_base), stream=as_in, backward=True, any_frame=False)
        shift = int(round(t0 / as_in.time_base)) if t0 else 0
        if transcode:
            for frame in ain.decode(as_in):
                t = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                if t < t0 or (t1 is not None and t >= t1):
                    continue
                frame.pts = int(round((t - t0) / Fraction(1, a_out.rate)))
                frame.time_base = Fraction(1, a_out.rate)
                for q in a_out.encode(frame):
                    out.mux(q)
                    n += 1
            for q in a_out.encode():
                out.mux(q)
        else:
            for p in ain.demux(as_in):
                if p.dts is None or p.pts is None:
                    continue
                t = float(p.pts * as_in.time_base)
                if t < t0 or (t1 is not None and t >= t1):
                    continue
                p.pts -= shift
                p.dts -= shift
                p.stream = a_out
                out.mux(p)
                n += 1
    return n


def keep_audio(video, source, start_frame: int = 0, frames: int | None = None, fps: float | None = None) -> int:
    """Remux `video` (in place, atomically) with `source`'s first audio stream; returns audio packets kept
    (0 and nothing done when the source has none)."""
    import av

    video, source = Path(video), Path(source)
    if not has_audio(source):
        return 0
    fps = fps or 25.0
    t0 = start_frame / fps
    t1 = None if frames is None else (start_frame + frames) / fps
    tmp = temp_beside(video)
    try:
        try:
            n = _copy(video, source, tmp, t0, t1, transcode=False)
        except (av.error.FFmpegError, ValueError):  # a codec MP4 cannot hold as it is
            n = _copy(video, source, tmp, t0, t1, transcode=True)
        os.replace(tmp, video)
    except av.error.FFmpegError as exc:
        raise FbtoolError(f"cannot keep the audio of {source}: {str(exc).splitlines()[0][:100]}",
                          "the blurred video was not written; re-encode the input's audio to AAC") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
