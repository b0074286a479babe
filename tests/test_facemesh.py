"""Issue 16: the FaceMesh family, the two-model Python reference and `fbtool blur --contour facemesh`.

Real weights (../shared/models/facemesh.pth, sha256-checked), real frames (../shared/media). The frames
below were checked by eye (docs/contour.md has the overlays): the detector's eyes and FaceMesh's eye
corners fall on the same eyes, and the face oval runs along the jaw and the hairline.
"""

from __future__ import annotations

import numpy as np
import pytest

HEADPOSE = "head-pose-face-detection-female.gif"  # one face, turned a little to the image left


@pytest.fixture(scope="module")
def fm():
    from toolchain.recipe import load_recipe

    return load_recipe("facemesh")


@pytest.fixture(scope="module")
def two():
    from toolchain.recipe import load_recipe

    return load_recipe("retinaface_mnet025_facemesh")


@pytest.fixture(scope="module")
def fm_runner(fm):
    from toolchain.runners import TorchRunner

    return TorchRunner(fm)


@pytest.fixture(scope="module")
def det_runner(two):
    from toolchain.runners import TorchRunner

    return TorchRunner(two)


def _faces(clip, index, two, det_runner):
    from toolchain.detector import detect_batch
    from toolchain.media import read_frames

    frame = read_frames(clip, start=index, max_frames=1)[0]
    return frame, detect_batch([frame], two, det_runner)[0]


def test_weights_load_strictly_and_are_checked(fm, tmp_path):
    import dataclasses

    from toolchain.errors import FbtoolError
    from toolchain.models import build_model
    from toolchain.recipe import load_recipe
    from toolchain.weights import REPO_ROOT

    net = build_model(fm)
    assert sum(p.numel() for p in net.parameters()) > 500_000
    with pytest.raises(FbtoolError, match="do not fit"):  # strict: another family's weights are refused
        build_model(fm, weights=REPO_ROOT.parent / "shared" / "models" / "facemesh.pth") and build_model(
            dataclasses.replace(fm, weights=load_recipe().weights))
    bad = tmp_path / "facemesh.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(FbtoolError, match="sha256"):
        build_model(fm, weights=bad)


def test_recipe_schema_for_a_landmark_model(fm, two, tmp_path):
    import yaml

    from toolchain.errors import FbtoolError
    from toolchain.recipe import RECIPES_DIR, load_recipe

    assert fm.anchors is None and fm.outputs.names == ["presence", "landmarks"]
    assert two.contour.model == "facemesh" and load_recipe().contour.model is None
    d = yaml.safe_load((RECIPES_DIR / "facemesh.yaml").read_text())
    d["anchors"] = {"steps": [8], "min_sizes": [[10]]}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(FbtoolError, match="'anchors'"):
        load_recipe(tmp_path / "x.yaml")
    d = yaml.safe_load((RECIPES_DIR / "ulfd_rfb640.yaml").read_text())
    d["contour"] = {"model": "facemesh"}  # no eye landmarks: no crop angle, no MediaPipe crop
    (tmp_path / "y.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(FbtoolError, match="'contour.model'"):
        load_recipe(tmp_path / "y.yaml")
    from toolchain.recipe import landmark_recipe

    d = yaml.safe_load((RECIPES_DIR / "retinaface_mnet025_facemesh.yaml").read_text())
    d["contour"]["model"] = "ulfd_rfb640"  # a detector is not a landmark model
    (tmp_path / "z.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(FbtoolError, match="'contour.model' names ulfd_rfb640"):
        landmark_recipe(load_recipe(tmp_path / "z.yaml"))
    assert landmark_recipe(two).name == "facemesh" and landmark_recipe(load_recipe()) is None


def test_landmarks_land_on_the_face(two, fm, det_runner, fm_runner):
    """Hand-checked frames: FaceMesh's eye corners (33/133, 362/263) sit on the detector's eyes, every
    landmark lies in the face's neighbourhood, FaceMesh is sure it sees a face."""
    from toolchain.contours import contours_frame

    for clip, index, n in ((HEADPOSE, 0, 1), ("classroom.gif", 0, 4)):
        frame, d = _faces(clip, index, two, det_runner)
        assert len(d.boxes) >= n
        for box, lm, c in zip(d.boxes, d.landmarks, contours_frame(frame, d.boxes, d.landmarks, two.contour, fm,
                                                                   fm_runner)):
            w = box[2] - box[0]
            pts = c.frame_landmarks()
            eyes = np.stack([pts[[33, 133]].mean(0), pts[[362, 263]].mean(0)])
            assert np.abs(eyes - lm[:2]).max() < 0.2 * w, (clip, box, eyes, lm[:2])
            centre = pts.mean(0)
            assert box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]
            assert c.presence > 0.7


def test_face_oval_encloses_the_face(two, fm, det_runner, fm_runner):
    """The 36 FACE_OVAL points enclose the detector's eyes, nose and mouth and span most of its box (on a
    turned face the nose tip stands out of the oval: the blurred oval, grown x blur.mask_scale, covers it).
    A wrong index set (the lips, one eye) or a crop mapped back wrongly fails here."""
    from toolchain.blur.ops.contour import grown, oval_ok
    from toolchain.contours import contours_frame
    from toolchain.reference.contour import points_in_polygon

    for clip, frontal in ((HEADPOSE, False), ("classroom.gif", True)):
        frame, d = _faces(clip, 0, two, det_runner)
        for box, lm, c in zip(d.boxes, d.landmarks, contours_frame(frame, d.boxes, d.landmarks, two.contour, fm,
                                                                   fm_runner)):
            poly = c.polygon
            assert points_in_polygon(grown(poly, two.blur.mask_scale), lm[:, 0], lm[:, 1]).all()
            if frontal:
                assert points_in_polygon(poly, lm[:, 0], lm[:, 1]).all()
            assert oval_ok(poly, box)
            x1, y1, x2, y2 = box
            ox1, oy1, ox2, oy2 = poly.min(0).tolist() + poly.max(0).tolist()
            assert ox2 - ox1 > 0.8 * (x2 - x1) and oy2 - oy1 > 0.8 * (y2 - y1)


def test_crop_is_mediapipes_square_and_cut_where_it_says(two):
    """crops_for: square, 1.5 x the long side, turned by the eye line; cut(): the frame point p lands on
    crop pixel to_crop(p) (a lone bright pixel in a rotated crop), so landmarks map back exactly."""
    from toolchain.contours import crops_for, cut

    box = np.array([[100.0, 50.0, 140.0, 110.0]])
    eyes = np.array([[[110.0, 70.0], [130.0, 78.0], [0, 0], [0, 0], [0, 0]]])
    (crop,) = crops_for(box, eyes, two.contour)
    assert crop.width == crop.height == pytest.approx(1.5 * 60)
    assert crop.angle == pytest.approx(np.arctan2(8, 20))
    frame = np.zeros((200, 260, 3), np.uint8)
    frame[83, 121] = 255  # pixel centre (121.5, 83.5)
    img = cut(frame, crop).astype(np.float64).sum(axis=2)
    m = crop.to_crop()
    u, v = m @ np.array([121.5, 83.5, 1.0])
    ys, xs = np.nonzero(img > 0)
    wts = img[ys, xs]
    assert abs((xs + 0.5) @ wts / wts.sum() - u) < 0.3 and abs((ys + 0.5) @ wts / wts.sum() - v) < 0.3


def test_no_face_falls_back_and_held_faces_carry_the_oval(two, fm, fm_runner, det_runner):
    """FaceMesh says "no face" (a crop of plain wall): the face keeps the detector's ellipse; a held face
    of a track that had an oval gets that oval moved with its box."""
    from toolchain.blur.ops.contour import ContourMasks
    from toolchain.blur.pipeline.track import Face

    frame, d = _faces(HEADPOSE, 0, two, det_runner)
    masks = ContourMasks(two, fm, fm_runner)
    wall_box = np.array([20.0, 20.0, 80.0, 100.0])  # the clip's left is a bare wall
    wall_lm = np.array([[35, 45], [65, 45], [50, 60], [38, 80], [62, 80]], np.float64)
    faces = [Face(0, d.boxes[0], "detected", 0.99, d.landmarks[0]), Face(1, wall_box, "detected", 0.99, wall_lm)]
    ovals = [o for o, _ in masks.frame(frame, faces)]
    assert ovals[0] is not None and ovals[1] is None
    assert masks.counts["no_face"] == 1
    held = Face(0, d.boxes[0] + np.array([10, 5, 20, 15]), "hold", 0.99)  # moved and grown
    ((moved, _),) = masks.frame(frame, [held])
    shift = (held.box[:2] + held.box[2:]) / 2 - (d.boxes[0][:2] + d.boxes[0][2:]) / 2
    assert np.allclose(moved.mean(0), ovals[0].mean(0) + shift * 1.0, atol=3)
    assert (moved.max(0) - moved.min(0) > ovals[0].max(0) - ovals[0].min(0)).all()
    assert masks.frame(frame, [Face(1, wall_box, "hold", 0.5)])[0][0] is None  # no oval ever: the ellipse


def test_blur_contour_facemesh_verify_passes_on_a_clip(tmp_path):
    """The CLI end to end: FaceMesh ovals blurred, the sidecar says which, the independent audit passes."""
    import json

    from click.testing import CliRunner

    from toolchain.cli import cli

    out = tmp_path / "hp.mp4"
    res = CliRunner().invoke(cli, ["blur", HEADPOSE, "-o", str(out), "--backend", "torch", "--contour", "facemesh",
                                   "--verify"])
    assert res.exit_code == 0, res.output
    assert "audit: PASS" in res.output and "as facemesh ovals" in res.output
    side = json.loads((tmp_path / "hp.faces.json").read_text())
    assert sum(f.get("mask", "").startswith("oval") for fr in side["frames"] for f in fr["faces"]) >= 10


def test_two_model_chain_runs_both_models(tmp_path):
    """`fbtool run --recipe retinaface_mnet025_facemesh`: FaceMesh's stages in <out>/facemesh first (export
    with a dynamic batch, checked on real face crops; surgery's landmarks layout), then the detector's in the
    run folder (its deepstream and validate stages read FaceMesh's artifacts)."""
    import onnx

    from toolchain import chain
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import RunFolder

    steps = chain.run(load_recipe("retinaface_mnet025_facemesh"), tmp_path, stop="surgery")
    # the landmark model first: the detector's deepstream and validate stages read its run folder
    assert [(s.model, s.stage, s.run) for s in steps] == [("facemesh", "export", True), ("facemesh", "surgery", True),
                                                         ("", "export", True), ("", "surgery", True)]
    fm_run = RunFolder(tmp_path / "facemesh")
    info = fm_run.stage("export")["info"]
    assert {r["batch"] for r in info["parity"]} == {1, 4} and all(r["max_abs"] <= r["limit"] for r in info["parity"])
    m = onnx.load(str(fm_run.model_onnx()))
    assert [o.name for o in m.graph.output] == ["presence", "landmarks"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert fm_run.stage("surgery")["info"]["output_layout"] == "landmarks"
    again = chain.run(load_recipe("retinaface_mnet025_facemesh"), tmp_path, stop="surgery")
    assert not any(s.run for s in again)  # both models' stages are fresh


def test_landmark_calibrate_and_validate_give_one_verdict(tmp_path):
    """FaceMesh calibrate (INT8 Q/DQ + FP16) gates each product on held-out face crops; a product that fails
    is deleted, and validate judges the same crops with the same checks: the same verdict."""
    from toolchain.calibrate.pipeline import calibrate
    from toolchain.export import export
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import FP16_ONNX, INT8_QDQ, RunFolder
    from toolchain.validate import validate

    fm = load_recipe("facemesh")
    export(fm, tmp_path)
    info = calibrate(fm, tmp_path, methods=("entropy",), fp16=True, frames=24)
    run = RunFolder(tmp_path)
    gates = {k: p["gate"] for k, p in info["products"].items()}
    assert gates["fp16"]["passed"] and gates["fp16"]["mean_landmark_px"] < 0.1
    assert (run.get(INT8_QDQ) is not None) == gates["int8_qdq"]["passed"]
    assert run.get(FP16_ONNX) is not None
    report = validate(fm, tmp_path)
    by = {c["name"]: c for c in report["candidates"]}
    assert by["onnx"]["status"] == "pass" and by["onnx"]["summary"]["max_landmark_px"] < 1e-2
    assert by["fp16"]["status"] == "pass"
    assert by["fp16"]["summary"]["mean_landmark_px"] == pytest.approx(gates["fp16"]["mean_landmark_px"])
    assert by["int8-qdq"]["status"] == ("pass" if gates["int8_qdq"]["passed"] else "skipped")
    assert by["engine"]["status"] == "skipped" and by["engine"]["reason"]


def test_blurred_oval_covers_the_hand_labelled_faces():
    """Independent face regions (tests/golden/contour_hand_labels.json, traced by hand without any model
    overlay): what --contour facemesh blurs leaves at most 1% of each face sharp, and the raw oval overlaps
    each hand region (IoU >= 0.6; mean 0.78 measured, docs/contour.md)."""
    from toolchain.bench_contour import hand_label_figures

    figs = hand_label_figures()
    assert len(figs["faces"]) == 6
    for f in figs["faces"]:
        assert f["blur_oval_under"] <= 0.01, f
        assert f["iou_oval"] >= 0.6, f
        assert f["presence"] >= 0.5
