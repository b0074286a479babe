"""fbtool's DeepStream blur, its torch twin (toolchain/blur/ops/dsblur.py), on this CPU.

The kernel (plugins/dsblur/blur.cu) is checked against this twin on a GPU (tests/test_dsblur_gpu.py);
here the twin itself is checked against OpenCV (an independent implementation of the same blur), its
object rules (masks, overlaps, planes), and on real frames with nvinfer's objects from the compiled
parser: every face the reference finds loses >= 90% of its detail, and the independent audit passes.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from toolchain.blur.ops import dsblur
from toolchain.blur.ops.dsblur import DsBlurObject


def test_the_blur_is_opencvs_chain(classroom_frame):
    """Block means by k, bilinear up (INTER_LINEAR), a (k|1) box filter: OpenCV's INTER_AREA / INTER_LINEAR /
    blur on the whole frame give the same pixels inside the box (away from the frame's left/right
    edges, where cv2.blur reflects and the twin averages frame pixels only); outside it nothing moves."""
    import cv2

    f = classroom_frame[:270, :480]
    o = DsBlurObject(0.0, 90.0, 480.0, 90.0)  # k = 90 / 3 = 30: 480 x 270 is 16 x 9 blocks
    assert dsblur.block_size(o.width, o.height) == 30
    out = dsblur.blur_frame(f, [o], grow=1.0)
    small = cv2.resize(f.astype(np.float32), (16, 9), interpolation=cv2.INTER_AREA)
    ref = cv2.blur(cv2.resize(small, (480, 270), interpolation=cv2.INTER_LINEAR), (31, 31))
    inner = (slice(90, 180), slice(16, 464))
    assert np.abs(out[inner].astype(float) - np.floor(ref[inner] + 0.5)).max() <= 1
    assert np.array_equal(out[:90], f[:90]) and np.array_equal(out[180:], f[180:])
    assert (out[inner] != f[inner]).mean() > 0.5


def test_mask_rules(headpose_frame):
    f = headpose_frame
    box = (100.4, 60.6, 90.0, 120.0)
    zero = DsBlurObject(*box, np.zeros((8, 8), np.float32))
    assert np.array_equal(dsblur.blur_frame(f, [zero]), f)  # an all-zero mask blurs nothing
    whole = dsblur.blur_frame(f, [DsBlurObject(*box)], grow=1.0)  # no mask: the whole box
    changed = (whole != f).any(-1)
    ys, xs = np.nonzero(changed)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (100, 61, 190, 181)  # pixel centres in the box
    assert changed[61:181, 100:190].mean() > 0.9
    half = np.zeros((4, 4), np.float32)
    half[:, :2] = 1.0
    left = dsblur.blur_frame(f, [DsBlurObject(*box, half)], grow=1.0)
    assert (left[61:181, 100:140] != f[61:181, 100:140]).any(-1).mean() > 0.9
    assert np.array_equal(left[:, 160:], f[:, 160:])  # the mask's right half is 0 (bilinear reach < 1 cell)


def test_overlap_takes_the_union_mask(headpose_frame):
    f = headpose_frame
    big, small = DsBlurObject(100.0, 50.0, 150.0, 150.0), DsBlurObject(150.0, 100.0, 30.0, 30.0)
    both = dsblur.blur_frame(f, [small, big], grow=1.0)
    only_big = dsblur.blur_frame(f, [big], grow=1.0)
    assert np.array_equal(both, only_big)  # inside the big box: the frame's k (the big face's, 50)
    # a masked-out part of the larger object is blurred through the smaller object's mask, same k
    hole = np.ones((10, 10), np.float32)
    hole[3:7, 3:7] = 0.0
    inner = dsblur.blur_frame(f, [small, DsBlurObject(100.0, 50.0, 150.0, 150.0, hole)], grow=1.0)
    assert np.array_equal(inner[110:120, 160:170], only_big[110:120, 160:170])
    assert not np.array_equal(inner[110:120, 160:170], dsblur.blur_frame(f, [small], grow=1.0)[110:120, 160:170])


def test_one_block_size_per_frame_so_no_seam(classroom_frame):
    """Two overlapping faces of different sizes are blurred with ONE k, the larger face's (as `fbtool
    blur`): where the small face sticks out of the big one it gets OpenCV's chain at the big k, so no
    seam between two blurs crosses a face (a k per object drew one: docs/deepstream.md)."""
    import cv2

    f = classroom_frame[:270, :480]
    big, small = DsBlurObject(0.0, 90.0, 480.0, 90.0), DsBlurObject(200.0, 160.0, 30.0, 40.0)  # k 30 and 10
    out = dsblur.blur_frame(f, [small, big], grow=1.0)
    small_cells = cv2.resize(f.astype(np.float32), (16, 9), interpolation=cv2.INTER_AREA)
    ref = cv2.blur(cv2.resize(small_cells, (480, 270), interpolation=cv2.INTER_LINEAR), (31, 31))
    outside = (slice(180, 200), slice(200, 230))  # the small box below the big one
    assert np.abs(out[outside].astype(float) - np.floor(ref[outside] + 0.5)).max() <= 1


def test_boxes_grow_about_their_centre(headpose_frame):
    f = headpose_frame
    o = DsBlurObject(200.0, 100.0, 50.0, 50.0)
    assert dsblur.GROW == 1.6
    assert np.array_equal(dsblur.blur_frame(f, [o]), dsblur.blur_frame(
        f, [DsBlurObject(185.0, 85.0, 80.0, 80.0)], grow=1.0))  # 1.6 x 50 = 80 about (225, 125)


def test_nv12_blurs_both_planes(headpose_frame):
    f = headpose_frame
    y = f[..., 1].copy()
    uv = f[::2, ::2, :2].copy()
    o = DsBlurObject(200.0, 80.0, 60.0, 80.0)
    ry, ruv = dsblur.blur_nv12(y, uv, [o], grow=1.0)
    ry, ruv = ry.numpy(), ruv.numpy()
    assert ry.shape == y.shape and ruv.shape == uv.shape
    assert (ry != y)[80:160, 200:260].mean() > 0.5 and (ruv != uv).any(-1)[40:80, 100:130].mean() > 0.5
    ry[80:160, 200:260] = y[80:160, 200:260]
    ruv[40:80, 100:130] = uv[40:80, 100:130]
    assert np.array_equal(ry, y) and np.array_equal(ruv, uv)
    assert dsblur.blur_nv12(y, uv, [])[0].numpy().tobytes() == y.tobytes()


def _parser_missing() -> str | None:
    if importlib.util.find_spec("toolchain.parser") is None:
        return "toolchain.parser is not in this tree"
    for tool in ("g++", "make", "nm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: the parser cannot be built"
    return None


@pytest.fixture(scope="module")
def nvinfer_objects(recipe, exported, tmp_path_factory):
    """nvinfer's objects (compiled parser, box + 32x32 mask) on 8 frames of a shared clip upscaled to 1080p
    (nvstreammux's size: the faces are 150-250 px, where a weak blur or a tight mask shows)."""
    reason = _parser_missing()
    if reason:
        pytest.skip(reason)
    from toolchain.deepstream import emit
    from toolchain.media import read_frames
    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.onnx_meta import get_metadata
    from toolchain.parser import build_parser
    from toolchain.runfolder import RunFolder

    run = tmp_path_factory.mktemp("dsblur")
    shutil.copy(exported[0] / "model.onnx", run / "model.onnx")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"})
    b = build_parser(recipe, run, meta=get_metadata(run / "model.onnx"))
    rf.record("build-parser", {"lib": b.lib, "harness": b.harness}, {"ds_major": b.ds_major})
    emit(recipe, run, ds_dir=run / "ds", mask=True)
    emu = NvInferEmulator(run / "ds" / f"config_infer_primary_{recipe.name}.txt", parser="compiled", mux=(1920, 1080))
    import cv2

    frames = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR)
              for f in read_frames("head-pose-face-detection-female-and-male.gif")[::7]]
    return frames, emu.infer(frames)


def test_real_faces_pass_the_proof_and_the_audit(recipe, torch_runner, nvinfer_objects):
    from toolchain.blur.audit import audit_frames, default_judges
    from toolchain.blur.proof import verify_frames

    frames, objects = nvinfer_objects
    assert sum(map(len, objects)) >= 12 and all(o.mask is not None for fo in objects for o in fo)
    outs = [dsblur.blur_frame(f, fo) for f, fo in zip(frames, objects)]  # the boxes as nvinfer attaches them
    proof = verify_frames(recipe, frames, outs, runner=torch_runner)
    assert proof.ok and len(proof.judged) >= 12, proof.failures()
    audit, _ = audit_frames(((i, a, b) for i, (a, b) in enumerate(zip(frames, outs))), default_judges())
    assert audit.ok and len(audit.judged) >= 12, audit.failures()
