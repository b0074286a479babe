"""The blur writer's x264 settings reach the encoder (x264 writes them into the stream's SEI)."""

import numpy as np

from toolchain.blur.writer import BlurWriter
from toolchain.video_writer import VideoWriter


def _x264_settings(path) -> str:
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start: data.index(b"\x00", start)].decode()


def test_blur_writer_turns_psycho_visual_tuning_off(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    for cls, name in ((BlurWriter, "blur.mp4"), (VideoWriter, "plain.mp4")):
        with cls(tmp_path / name, fps=25) as w:
            for f in frames:
                w.write(f)
    blur, plain = _x264_settings(tmp_path / "blur.mp4"), _x264_settings(tmp_path / "plain.mp4")
    assert "psy_rd=0.00:0.00" in blur and blur.endswith(" aq=0") and "crf=10.0" in blur, blur
    assert "psy_rd=0.00:0.00" not in plain and "crf=18.0" in plain, plain
