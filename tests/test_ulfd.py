"""Second model family: Ultra-Light-Fast-Generic-Face-Detector-1MB (RFB, 640x480), boxes only."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ulfd_recipe():
    from toolchain.recipe import load_recipe

    return load_recipe("ulfd_rfb640")


@pytest.fixture(scope="module")
def ulfd_runner(ulfd_recipe):
    from toolchain.runners import TorchRunner

    return TorchRunner(ulfd_recipe)


def test_recipe_is_boxes_only(ulfd_recipe):
    assert ulfd_recipe.family == "ulfd"
    assert not ulfd_recipe.has_landmarks
    assert (ulfd_recipe.input.width, ulfd_recipe.input.height) == (640, 480)
    assert ulfd_recipe.preprocess.color == "rgb"
    assert ulfd_recipe.preprocess.scale == 1 / 128


def test_strict_load_and_head_rows_match_anchors(ulfd_recipe, ulfd_runner):
    """build_model loads strict=True; every published key is used and N equals the reference anchors."""
    import torch

    from toolchain.reference.anchors import anchors_for
    from toolchain.weights import load_state_dict, resolve_weights

    state = load_state_dict(resolve_weights(ulfd_recipe.weights))
    assert set(ulfd_runner.model.state_dict()) == set(state)
    x = torch.zeros(2, 3, 480, 640)
    with torch.inference_mode():
        outs = ulfd_runner.model(x)
    assert len(outs) == 2  # no landmark head
    n = anchors_for(ulfd_recipe).shape[0]
    assert n == 17640  # (80*60 + 10*8) * 3 + (40*30 + 20*15) * 2
    assert tuple(outs[0].shape) == (2, n, 4) and tuple(outs[1].shape) == (2, n, 2)
    assert torch.allclose(outs[1].sum(-1), torch.ones(2, n))  # softmax applied


def test_wrong_variant_is_refused(ulfd_recipe):
    import dataclasses

    from toolchain.errors import FbtoolError
    from toolchain.models import build_model

    with pytest.raises(FbtoolError, match="variant"):
        build_model(dataclasses.replace(ulfd_recipe, variant="slim320"))


def _original_priors(width, height, fmaps, min_boxes):
    """The original repo's prior rule (fd_config/generate_priors), written out independently:
    centres ((i + .5) / fw, (j + .5) / fh), rows j, columns i, then min boxes; clamped to [0, 1]."""
    out = []
    for (fw, fh), sizes in zip(fmaps, min_boxes):
        for j in range(fh):
            for i in range(fw):
                for s in sizes:
                    out.append([(i + 0.5) / fw, (j + 0.5) / fh, s / width, s / height])
    return np.clip(np.asarray(out, dtype=np.float64), 0.0, 1.0)


def test_decode_matches_original_priors(ulfd_recipe, ulfd_runner, headpose_frame):
    """Reference decode of the model's output == original decode of the raw head with the original priors."""
    import torch

    from toolchain.models.ulfd import ULFD
    from toolchain.reference.anchors import anchors_for
    from toolchain.reference.decode import decode_boxes
    from toolchain.reference.preprocess import preprocess_batch

    raw = ULFD()  # same network, no centre correction
    raw.load_state_dict(ulfd_runner.model.state_dict(), strict=True)
    raw.eval()
    x, _ = preprocess_batch([headpose_frame], ulfd_recipe)
    with torch.inference_mode():
        d_raw = raw(torch.from_numpy(x))[0][0].double().numpy()
    loc = ulfd_runner.infer({"input": x})["loc"][0]
    priors = _original_priors(640, 480, [(80, 60), (40, 30), (20, 15), (10, 8)],
                              [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]])
    c = priors[:, :2] + d_raw[:, :2] * 0.1 * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(d_raw[:, 2:] * 0.2)
    orig = np.concatenate([c - wh / 2, c + wh / 2], axis=1) * [640, 480, 640, 480]
    ours = decode_boxes(loc, anchors_for(ulfd_recipe), (0.1, 0.2), 640, 480)
    assert np.abs(ours - orig).max() < 1e-3  # px
    offsets = [getattr(ulfd_runner.model, f"center_offsets_{i}") for i in range(4)]
    assert [o is None for o in offsets] == [True, True, True, False]  # only 8 rows over 480 px differ
    assert tuple(offsets[3].shape) == (1, 240, 4)
    # Without the correction the stride-64 level would be off by up to 30 px at 480 rows.
    plain = decode_boxes(d_raw.astype(np.float32), anchors_for(ulfd_recipe), (0.1, 0.2), 640, 480)
    assert np.abs(plain - orig).max() > 10


def test_headpose_faces_agree_with_retinaface(ulfd_recipe, ulfd_runner, recipe, torch_runner, headpose_frame):
    from toolchain.compare.metrics import match
    from toolchain.detector import detect_batch
    from toolchain.reference.nms import iou_matrix

    ulfd = detect_batch([headpose_frame], ulfd_recipe, ulfd_runner)[0]
    retina = detect_batch([headpose_frame], recipe, torch_runner)[0]
    assert len(ulfd) == 2
    assert ulfd.landmarks is None
    assert len(retina) == 2
    ious = iou_matrix(ulfd.boxes, retina.boxes)
    assert ious.max(axis=1).min() >= 0.5
    assert ious.max(axis=0).min() >= 0.5
    m = match(retina, ulfd)  # shared metrics with landmarks on one side only
    assert (m.tp, m.fp, m.fn) == (2, 0, 0) and m.landmark_errors == [] and min(m.mask_ious) > 0.6
    masks = ulfd.masks(ulfd_recipe.mask.resolution)  # no landmarks: upright ellipses
    assert masks.shape == (2, 32, 32) and masks[:, 16, 16].min() == 1.0 and masks[:, 0, 0].max() == 0.0


def test_classroom_small_faces(ulfd_recipe, ulfd_runner, classroom_frame):
    from toolchain.detector import detect_batch

    dets = detect_batch([classroom_frame], ulfd_recipe, ulfd_runner)[0]
    assert len(dets) == 4
    wh = dets.boxes[:, 2:] - dets.boxes[:, :2]
    assert (wh < 40).all()  # small faces on a 480x270 frame


def test_export_parity(ulfd_recipe, tmp_path):
    import onnx

    from toolchain.export import export
    from toolchain.onnx_meta import get_metadata

    info = export(ulfd_recipe, tmp_path)
    rows = info["parity"]
    assert {r["batch"] for r in rows} == {1, 4}
    assert {r["output"] for r in rows} == {"loc", "conf"}
    assert max(r["max_abs"] for r in rows) <= 1e-4
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["loc", "conf"]
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim[1:]]
    assert dims == [17640, 4]
    meta = get_metadata(model)
    assert meta["family"] == "ulfd" and meta["outputs"]["landmarks"] is None
