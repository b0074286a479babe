"""What the DeepStream blur app writes, emulated on real frames (toolchain/blur/deepstream.py): nvinfer
with the compiled parser and the blur app's own config, the IOU tracker + hold component emulation,
fbtool's DeepStream blur twin; judged by the pixel proof and the audit, also from `fbtool validate`."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

CLIP = "classroom.gif"


@pytest.fixture(scope="module")
def ds_run(recipe, exported, tmp_path_factory):
    for tool in ("g++", "make", "nm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the parser cannot be built")
    from toolchain.deepstream import emit
    from toolchain.onnx_meta import get_metadata
    from toolchain.parser import build_parser
    from toolchain.runfolder import RunFolder

    src, info = exported
    run = tmp_path_factory.mktemp("dsemu")
    shutil.copy(src / "model.onnx", run / "model.onnx")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"}, info)
    b = build_parser(recipe, run, meta=get_metadata(run / "model.onnx"))
    rf.record("build-parser", {"lib": b.lib, "harness": b.harness}, {"ds_major": b.ds_major})
    out = emit(recipe, run, ds_dir=run / "ds", ds_version="9.1")
    return run, out["files"]


@pytest.fixture(scope="module")
def clip_objects(recipe, ds_run):
    from toolchain.frames import sample_frames
    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH

    frames = [f for _, _, f in sample_frames([CLIP], per_clip=6, step=1)]
    emu = NvInferEmulator(ds_run[1]["blur_infer_config"], parser="compiled", mux=(STREAMMUX_WIDTH, STREAMMUX_HEIGHT))
    return frames, emu.infer(frames)


def _drop(inp, out, box) -> float:
    from toolchain.blur.proof import ProofReport, check_frame
    from toolchain.reference.detections import Detections

    rep = ProofReport()
    check_frame(rep, 0, inp, out, Detections(np.asarray([box], np.float64), np.ones(1)))
    return rep.faces[0]["drop"]


def test_a_face_the_detector_misses_is_held_by_the_deepstream_blur(recipe, clip_objects):
    """Take the largest face out of frame 3's objects (a detector miss): the tracker shadow-tracks it and
    the hold component re-creates it, so it is blurred there too. With hold 0 it stays sharp."""
    from toolchain.blur.deepstream import deepstream_blur

    frames, objects = clip_objects
    objects = [list(o) for o in objects]
    face = max(objects[3], key=lambda o: o.width * o.height)
    objects[3].remove(face)
    out, targets = deepstream_blur(recipe, frames, objects)
    held = [t for t in targets[3] if t.held]
    assert held and any(abs(t.obj.left - face.left) < face.width for t in held)
    assert _drop(frames[3], out[3], face.box) >= 0.9

    no_hold = dataclasses.replace(recipe, blur=dataclasses.replace(recipe.blur, hold=0))
    out0, targets0 = deepstream_blur(no_hold, frames, objects)
    assert not any(t.held for t in targets0[3])
    assert _drop(frames[3], out0[3], face.box) < 0.5  # the planted defect: no hold, a sharp face


def test_deepstream_blur_passes_the_proof_and_the_audit(recipe, ds_run):
    from toolchain.blur.deepstream import verify_deepstream

    res = verify_deepstream(recipe, ds_run[1]["blur_infer_config"], [CLIP], frames_per_clip=8)
    assert res["frames"] == 8 and res["proof"]["faces_judged"] > 10
    assert res["ok"], res["failures"]
    assert res["audit"]["worst_detail_drop"] >= 0.9


def test_validate_judges_the_deepstream_pixels_of_the_nvinfer_candidate(recipe, ds_run, monkeypatch):
    from toolchain.blur import deepstream as dsb
    from toolchain.validate import summary_table, validate

    run, _ = ds_run

    def pixels(recipe, config, clips):
        return dsb.verify_deepstream(recipe, config, clips[:1], frames_per_clip=4)

    report = validate(recipe, run, only={"nvinfer"}, per_clip=2, step=5, media=[CLIP], pixels=pixels)
    (c,) = report["candidates"]
    assert c["status"] == "pass" and c["pixels"]["ok"] and c["pixels"]["frames"] == 4
    assert "DeepStream blur (hold" in summary_table(report)

    # plant: the DeepStream blur writes the frame back unchanged -> the candidate fails on its pixels
    import toolchain.blur.ops.dsblur as twin

    monkeypatch.setattr(twin, "blur_frame", lambda frame, objects: frame.copy())
    report = validate(recipe, run, only={"nvinfer"}, per_clip=2, step=5, media=[CLIP], pixels=pixels)
    (c,) = report["candidates"]
    assert c["status"] == "fail" and any("DeepStream blur app" in b for b in c["breaches"])


def test_build_parser_dsblur_needs_a_deepstream_host(tmp_path):
    """Without DeepStream's headers and libraries: one line with a hint, and nothing built or recorded."""
    from click.testing import CliRunner

    from toolchain.cli import cli

    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["build-parser", "-o", str(out), "--dsblur", "--deepstream-root", str(tmp_path / "nods")])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: DeepStream's headers are not at") and "hint:" in lines[0]
    assert not (out / "parser").exists() and not (out / "dsblur").exists()


MP4 = "one-by-one-person-detection.mp4"
# Windows of the MP4 where a live pipeline loses small, fast faces at the top of the frame: nvinfer's
# box lags the face (frame 437), a held box overlaps a new face (684), a 16 px face at the right edge
# (862), a head nvinfer finds only below blur.score (1254). docs/deepstream.md, "Every frame".
MP4_WINDOWS = ((420, 20), (668, 20), (846, 20), (1240, 20))


def test_live_rule_passes_the_audit_where_the_mp4_leaked(recipe, ds_run):
    """The shipped live rule (nvinfer at blur.live_score, the whole grown box, one k per frame, margin
    1.6) on the MP4's worst windows: the independent audit's judges find no face left with > 10% of its
    detail. Each part was planted out once (threshold blur.score, the contour mask, a k per object,
    margin 1.4): each brought leaks back in these windows (docs/deepstream.md)."""
    from toolchain.blur.audit import audit_frames, default_judges
    from toolchain.blur.deepstream import _boxes, deepstream_blur
    from toolchain.frames import sample_frames
    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH

    emu = NvInferEmulator(ds_run[1]["blur_infer_config"], parser="compiled", mux=(STREAMMUX_WIDTH, STREAMMUX_HEIGHT))
    pairs, boxes, n = [], {}, 0
    for start, count in MP4_WINDOWS:
        frames = [f for _, _, f in sample_frames([MP4], per_clip=count, start=start)]
        out, targets = deepstream_blur(recipe, frames, emu.infer(frames))
        for a, b, tg in zip(frames, out, targets):
            pairs.append((n, a, b))
            boxes[n] = _boxes(tg)
            n += 1
    audit, _ = audit_frames(pairs, default_judges(), blurred=boxes.__getitem__)
    assert len(audit.judged) >= 20, audit.summary()
    assert audit.ok, audit.failures()
