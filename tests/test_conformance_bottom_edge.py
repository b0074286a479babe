"""Defect 3 end to end: on a clip whose faces are cut by the frame's bottom edge (made here from a
shared clip by cropping through its lowest face), `fbtool validate --candidate nvinfer` keeps every
face (F1 >= 0.99) and its mask passes validate's mask check. Before the first fix nvinfer's
attach_metadata_detector dropped each of them (the box passed the frame's bottom) and DeepStream never
blurred them; before the second, their masks were squashed (docs/deepstream.md, "Faces cut by the
frame's edges")."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import cli

CLIPS = ["face-demographics-walking-and-pause.gif", "head-pose-face-detection-female-and-male.gif"]


def _parser_missing() -> str | None:
    return None if shutil.which("g++") and shutil.which("make") else "g++/make missing: the parser cannot be built"


def _bottom_cut_clip(src: str, dst, recipe, runner, frames_max: int = 40) -> int:
    """Crop every frame of `src` at 70% down its lowest face (in the first frame), 16:9 around that face
    (the streammux frame's aspect: nvstreammux stretches any other to 1920x1080, which is not what
    this clip tests); returns the crop height."""
    from toolchain.detector import detect_frames
    from toolchain.media import read_frames
    from toolchain.video_writer import VideoWriter

    frames = read_frames(src, max_frames=frames_max)
    dets = detect_frames(frames[:1], recipe, runner)[0]
    low = int(np.argmax(dets.boxes[:, 3]))
    y1, y2 = dets.boxes[low, 1], dets.boxes[low, 3]
    cut = int(y1 + 0.7 * (y2 - y1)) & ~1
    fw = frames[0].shape[1]
    cw = min(int(round(cut * 16 / 9)) & ~1, fw & ~1)
    x0 = int(np.clip((dets.boxes[low, 0] + dets.boxes[low, 2]) / 2 - cw / 2, 0, fw - cw))
    with VideoWriter(dst, fps=10) as w:
        for f in frames:
            w.write(np.ascontiguousarray(f[:cut, x0:x0 + cw]))
    return cut


@pytest.mark.skipif(_parser_missing() is not None, reason=str(_parser_missing()))
def test_validate_nvinfer_keeps_faces_cut_by_the_bottom_edge(recipe, torch_runner, fresh_run, tmp_path):
    from toolchain.deepstream import emit
    from toolchain.detector import detect_frames
    from toolchain.media import read_frames
    from toolchain.onnx_meta import get_metadata
    from toolchain.parser import build_parser
    from toolchain.runfolder import RunFolder

    run = fresh_run
    b = build_parser(recipe, run, meta=get_metadata(run / "model.onnx"))
    RunFolder(run).record("build-parser", {"lib": b.lib, "harness": b.harness}, {"ds_major": b.ds_major})
    emit(recipe, run, ds_dir=tmp_path / "ds")
    args, at_edge = [], 0
    for i, clip in enumerate(CLIPS):
        dst = tmp_path / f"bottom_cut_{i}.mp4"
        h = _bottom_cut_clip(clip, dst, recipe, torch_runner)
        args += ["--media", str(dst)]
        ref = detect_frames(read_frames(dst, step=5, max_frames=6), recipe, torch_runner)
        at_edge += sum(int((d.boxes[:, 3] >= h - 1).sum()) for d in ref)
    assert at_edge >= 6, f"only {at_edge} reference faces touch the bottom edge: the clip does not test the fix"
    r = CliRunner().invoke(cli, ["validate", "-o", str(run), "--candidate", "nvinfer", "--frames-per-clip", "6",
                                 "--step", "5"] + args)
    report = json.loads((run / "report.json").read_text())
    nv = next(c for c in report["candidates"] if c["name"] == "nvinfer")
    assert nv["status"] != "skipped", nv
    s = nv["summary"]
    assert s["fn"] == 0 and s["f1"] >= 0.99, (s, r.output)
    # The masks of the cut faces: the parser clips each box to the frame's part of the network input
    # (the streammux frame letterboxed), so nvinfer's crop changes nothing and nvdsosd lays the mask
    # on the box it was made for. Before, the box was cut under a mask made for the box reaching into
    # the padding: mean mask IoU 0.87-0.91 and validate's mask check failed (exit 2).
    assert nv["status"] == "pass" and r.exit_code == 0, (nv.get("checks"), s, r.output)
    assert s["mean_mask_iou"] >= recipe.tolerances.mask_iou, s
    print(f"\nbottom-cut clips: F1 {s['f1']:.3f}, mean mask IoU {s['mean_mask_iou']:.3f}, {at_edge} faces at the edge")
