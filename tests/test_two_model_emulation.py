"""The two-model DeepStream deployment, emulated (toolchain/nvinfer/emulation/secondary.py,
toolchain/compare/two_model.py), against the Python two-model reference (toolchain/contours.py), on
real frames with the real weights. Both sides run FaceMesh in PyTorch: what differs is the geometry
DeepStream imposes (the streammux frame, the squared and even-snapped box, nvinfer's crop, the contour
component's 32x32 mask on nvdsosd's cells) and, with the recipe's rotate: true, the crop's rotation,
which nvinfer cannot do.
"""

from __future__ import annotations

import dataclasses

import pytest

from toolchain.nvinfer.emulation.secondary import object_crop, should_infer


def test_object_crop_is_get_converted_buffers_arithmetic():
    """Worked by hand from gstnvinfer.cpp, get_converted_buffer: GST_ROUND_UP_2((unsigned) left),
    GST_ROUND_DOWN_2((unsigned) width); maintain-aspect-ratio: hdest = net_w * h / (double) w, fits ->
    (net_w, (guint) hdest); symmetric: offset = (net - dest) / 2."""
    c = object_crop(301.7, 151.3, 205.9, 141.6, 192, 192)
    assert (c.src_left, c.src_top, c.src_width, c.src_height) == (302, 152, 204, 140)
    assert (c.dest_width, c.dest_height, c.offset_left, c.offset_top) == (192, 192, 0, 0)
    c = object_crop(301.7, 151.3, 205.9, 141.6, 192, 192, True, True)
    assert (c.dest_width, c.dest_height) == (192, 131)  # 192 * 140 / 204 = 131.76
    assert (c.offset_left, c.offset_top) == (0, 30)  # (192 - 131) / 2
    c = object_crop(11.0, 13.0, 99.0, 97.0, 192, 192, True, False)
    assert (c.src_left, c.src_top, c.src_width, c.src_height) == (12, 14, 98, 96)
    assert (c.dest_width, c.dest_height, c.offset_left, c.offset_top) == (192, 188, 0, 0)  # 192 * 96 / 98 = 188.08
    # network pixel -> frame: x = src_left + (u - offset_left) * src_width / dest_width
    m = object_crop(301.7, 151.3, 205.9, 141.6, 192, 192, True, True).crop().to_frame()
    assert m @ [0, 30, 1] == pytest.approx([302, 152]) and m @ [192, 161, 1] == pytest.approx([506, 292])


def test_should_infer_object_filters():
    assert should_infer(1, 16, 16, 1, 16, 16)
    assert not should_infer(2, 100, 100, 1)  # another gie's object
    assert not should_infer(1, 15, 100, 1, 16, 16)  # below the dGPU's 16x16 floor
    assert not should_infer(1, 300, 100, 1, 0, 0, 200, 0)


@pytest.fixture(scope="module")
def two_model(recipe, exported, tmp_path_factory):
    """Both models as DeepStream runs them, and the Python reference, on real frames."""
    import shutil

    from toolchain.compare.two_model import run_deployed
    from toolchain.contours import contours_frame
    from toolchain.deepstream import emit
    from toolchain.deepstream.secondary import emit_secondary
    from toolchain.detector import detect_frames
    from toolchain.frames import sample_frames
    from toolchain.nvinfer.emulation import NvInferEmulator, ReferenceParser
    from toolchain.nvinfer.emulation.secondary import SecondaryEmulator
    from toolchain.nvinfer.names import STREAMMUX_HEIGHT, STREAMMUX_WIDTH
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import RunFolder
    from toolchain.runners import TorchRunner

    det, fm = load_recipe("retinaface_mnet025_facemesh"), load_recipe("facemesh")
    src, info = exported
    run = tmp_path_factory.mktemp("tmrun")
    shutil.copy(src / "model.onnx", run / "model.onnx")
    RunFolder(run).record("export", {"onnx": run / "model.onnx"}, info)
    ds = run / "ds"
    emit(recipe, run, ds_dir=ds)
    fm_onnx = run / "facemesh.onnx"
    fm_onnx.write_bytes(b"stand-in: the emulation is given a PyTorch runner")
    sg = emit_secondary(det, fm, fm_onnx, ds, "fp32")
    mux = (STREAMMUX_WIDTH, STREAMMUX_HEIGHT)
    fm_runner = TorchRunner(fm)
    frames = [f for _, _, f in sample_frames(["head-pose-face-detection-female-and-male.gif", "classroom.gif"],
                                             per_clip=2, step=9)]
    pgie = NvInferEmulator(ds / f"config_infer_primary_{recipe.name}.txt", parser=ReferenceParser(recipe), mux=mux)
    ref_dets = detect_frames(frames, recipe, TorchRunner(recipe))

    def deploy(params=None):
        sgie = SecondaryEmulator(sg["sgie_config"], params or sg["components"], runner=fm_runner)
        return run_deployed(frames, pgie, sgie, mux)

    def reference(rotate):
        spec = dataclasses.replace(det.contour, rotate=rotate)
        return [contours_frame(f, d.boxes, d.landmarks, spec, fm, fm_runner) for f, d in zip(frames, ref_dets)]

    return {"frames": frames, "ref_dets": ref_dets, "deploy": deploy, "reference": reference, "mux": mux,
            "det": det, "params": sg["components"], "pgie": pgie,
            "sgie": SecondaryEmulator(sg["sgie_config"], sg["components"], runner=fm_runner)}


def _judge(tm, deployed, rotate):
    from toolchain.compare.two_model import judge

    return judge(tm["frames"], tm["ref_dets"], tm["reference"](rotate), deployed, tm["det"].contour.presence,
                 tm["mux"]).summary()


def test_deployment_reproduces_the_unrotated_reference(two_model):
    """Rotation off on the reference: the only differences left are the streammux resampling, the box
    snapped to even pixels and nvdsosd's 32x32 cells. Measured (2-core CPU): 0.25 px mean landmark
    error, mask IoU 0.95 mean / 0.91 min (docs/deepstream.md)."""
    s = _judge(two_model, two_model["deploy"](), rotate=False)
    assert s["both_face"] >= 8, s
    assert s["ref_only"] + s["deployed_only"] <= 1, s
    assert s["landmark_px_mean"] < 0.6 and s["landmark_px_max"] < 2.0, s
    assert s["mask_iou_mean"] >= 0.93 and s["mask_iou_min"] >= 0.85, s


def test_deployment_against_the_recipes_rotated_reference(two_model):
    """The recipe's crop turns to level the eyes; nvinfer cannot rotate a crop. The figures say what
    that costs (docs/deepstream.md); the floor here catches a broken deployment, not the rotation."""
    s = _judge(two_model, two_model["deploy"](), rotate=True)
    assert s["both_face"] >= 8, s
    assert s["mask_iou_mean"] >= 0.8 and s["landmark_px_mean"] < 5.0, s


def test_a_crop_without_mediapipes_margin_is_caught(two_model):
    """Planted in the deployment: the squaring component's scale 1.0 instead of 1.5 (FaceMesh then sees
    a tighter crop than it was trained on)."""
    s = _judge(two_model, two_model["deploy"]({**two_model["params"], "scale": 1.0}), rotate=False)
    assert not (s["landmark_px_mean"] < 0.6 and s["mask_iou_mean"] >= 0.93), s


def test_compiled_component_agrees_with_the_emulation_on_real_facemesh_output(two_model):
    """The C++ contour component (plugins/contour) and the emulation, on FaceMesh's real output for real
    faces: same squares, same contour boxes, identical 32x32 masks, same fallbacks."""
    import cv2
    import numpy as np

    from toolchain.nvinfer import contour_component as comp
    from toolchain.nvinfer.emulation.nvinfer import _scaled

    if comp.missing_reason():
        pytest.skip(comp.missing_reason())
    tm = two_model
    pgie, sgie = tm["pgie"], tm["sgie"]
    p = tm["params"]
    mw, mh = tm["mux"]
    checked = 0
    for frame in tm["frames"][:3]:
        h, w = frame.shape[:2]
        objs = [_scaled(o, mw / w, mh / h) for o in pgie.infer([frame])[0]]
        res = sgie.run(cv2.resize(frame, (mw, mh), interpolation=cv2.INTER_LINEAR), objs)
        f32 = np.float32
        lines = [f"params 1 2 {p['scale']} {p['presence_threshold']} {p['presence_is_logit']} "
                 f"{p['landmark_scale']} {mw} {mh}"]
        lines += ["obj 1 " + " ".join(repr(float(f32(v))) for v in (o.left, o.top, o.width, o.height)) + " 0.5"
                  for o in objs]
        lines += ["square", "print"]
        outs = []
        for k, r in enumerate(res):
            if r.output is not None:
                lines.append(f"tensor {k} 2 192 192 0 0 {float(f32(r.presence))!r} {{lm{len(outs)}}}")
                outs.append(r.output)
        lines += ["apply", "print"]
        sq, done = comp.run_spec(lines, outs)
        for r, s, o in zip(res, sq["objects"], done["objects"]):
            assert tuple(s["rect"]) == r.square
            if r.contoured:
                assert o["rect"] == pytest.approx([r.obj.left, r.obj.top, r.obj.width, r.obj.height], abs=1e-3)
                assert (np.array(o["mask"], np.float32).reshape(32, 32) == r.obj.mask).all()
                checked += 1
            else:
                assert o["mask"] == pytest.approx([0.5 + k * 1e-4 for k in range(1024)], abs=1e-6)
    assert checked >= 4
