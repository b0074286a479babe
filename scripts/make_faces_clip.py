"""The 1080p H.264 clip of `fbtool bench --streams` (docs/bench.md): the shared GIFs with faces
(head-pose, classroom, face-demographics-walking), upscaled to 1920x1080, played forward, backward and
forward (408 frames, 30 frames/s, CRF 26). The shared MP4 has faces in a handful of its frames only.
Usage: python scripts/make_faces_clip.py OUT.mp4
"""

from __future__ import annotations

import sys


def main(out: str) -> None:
    import av
    import cv2

    from toolchain.media import iter_frames

    frames = []
    for clip in ("head-pose-face-detection-female-and-male.gif", "classroom.gif", "face-demographics-walking.gif"):
        frames += [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for _, f in iter_frames(clip, max_frames=100)]
    with av.open(out, "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
        s.options = {"crf": "26", "preset": "veryfast"}
        for img in frames + frames[::-1] + frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


if __name__ == "__main__":
    main(sys.argv[1])
