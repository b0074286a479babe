"""The one Python reference for post-processing: anchors, decode, NMS, masks, letterbox."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolchain.reference import decode_boxes, decode_landmarks, make_anchors, nms
from toolchain.reference.detections import Detections
from toolchain.reference.masks import box_mask, ellipse_params, frame_mask, mask_iou, rasterize_mask
from toolchain.reference.preprocess import letterbox_geometry, preprocess, to_frame


def test_anchor_counts_match_sources_md():
    sizes = [[10, 20], [32, 64], [128, 256]]
    assert make_anchors(640, 640, [8, 16, 32], sizes).shape == (16800, 4)
    assert make_anchors(640, 384, [8, 16, 32], sizes).shape == (10080, 4)


def test_anchor_order_and_values():
    a = make_anchors(64, 32, [8, 16, 32], [[10, 20], [32, 64], [128, 256]])
    # level 0: 4 rows x 8 cols, 2 sizes; first cell (0,0), then size 20 of the same cell
    np.testing.assert_allclose(a[0], [4 / 64, 4 / 32, 10 / 64, 10 / 32], rtol=1e-6)
    np.testing.assert_allclose(a[1], [4 / 64, 4 / 32, 20 / 64, 20 / 32], rtol=1e-6)
    np.testing.assert_allclose(a[2, :2], [12 / 64, 4 / 32], rtol=1e-6)  # next column
    np.testing.assert_allclose(a[16, :2], [4 / 64, 12 / 32], rtol=1e-6)  # next row
    assert a.shape[0] == 2 * (4 * 8 + 2 * 4 + 1 * 2)


def test_decode_formula():
    anchors = np.array([[0.5, 0.5, 0.1, 0.2]], np.float32)
    loc = np.array([[1.0, -1.0, 0.0, math.log(2) / 0.2]], np.float32)
    b = decode_boxes(loc, anchors, (0.1, 0.2), 100, 200)
    # centre (0.5 + 0.1*0.1, 0.5 - 0.1*0.2) -> (51, 96) px; size (0.1, 0.4) -> (10, 80) px
    np.testing.assert_allclose(b[0], [46, 56, 56, 136], atol=1e-4)
    lm = decode_landmarks(np.array([[1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32), anchors, (0.1, 0.2), 100, 200)
    np.testing.assert_allclose(lm[0, 0], [51, 100], atol=1e-4)


def test_nms_greedy():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [3, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 0.4, top_k=1).tolist() == [3]


def test_mask_edge_is_half_and_tilt_follows_eyes():
    box = (0, 0, 40, 60)
    flat = ellipse_params(box, np.array([[10, 20], [30, 20]]))
    assert flat[4] == 0.0
    tilted = ellipse_params(box, np.array([[10, 20], [30, 30]]))
    assert tilted[4] == pytest.approx(math.atan2(10, 20))
    reversed_eyes = ellipse_params(box, np.array([[30, 30], [10, 20]]))
    assert reversed_eyes[4] == pytest.approx(tilted[4])
    clamp = ellipse_params(box, np.array([[10, 0], [11, 40]]), max_tilt_deg=45)
    assert clamp[4] == pytest.approx(math.pi / 4)
    m = rasterize_mask(flat, 0, 0, 40, 60, 40, 60)
    assert m[30, 20] == 1.0 and m[0, 0] == 0.0
    # a sample exactly on the ellipse edge (r = 1) is probability 0.5
    edge = rasterize_mask(flat, 39.5, 29.5, 40.5, 30.5, 1, 1)
    assert edge[0, 0] == pytest.approx(0.5, abs=1e-6)


def test_box_mask_matches_frame_mask():
    """The parser's per-box mask and the blur's frame mask are the same function on different grids."""
    box = np.array([10.0, 20.0, 50.0, 60.0])  # 40 x 40 px: a 40x40 box mask samples frame pixel centres
    lms = np.array([[20, 35], [40, 39], [30, 45], [22, 52], [38, 53]], np.float32)
    bm = box_mask(box, lms, 40, 0.15)
    fm = frame_mask(box[None], lms[None], 100, 100, 0.15)[20:60, 10:50]
    np.testing.assert_allclose(bm, fm, atol=1e-6)
    assert mask_iou(bm, fm) == 1.0
    assert 0.5 < (bm >= 0.5).mean() < math.pi / 4 + 0.05  # an inscribed ellipse covers ~pi/4 of the box


def test_letterbox_16_9_into_640x384():
    lb = letterbox_geometry(480, 270, 640, 384)
    assert (lb.scaled_w, lb.scaled_h, lb.pad_x, lb.pad_y) == (640, 360, 0, 0)
    sym = letterbox_geometry(480, 270, 640, 384, symmetric=True)
    assert (sym.pad_x, sym.pad_y) == (0, 12)
    stretch = letterbox_geometry(480, 270, 640, 384, keep_aspect=False)
    assert (stretch.scaled_w, stretch.scaled_h) == (640, 384)


def test_preprocess_padding_is_minus_mean(recipe, classroom_frame):
    x, lb = preprocess(classroom_frame, recipe)
    assert x.shape == (3, 384, 640) and x.dtype == np.float32
    # rows below the scaled frame are black padding: y = 1.0 * (0 - mean[c]) in BGR order
    np.testing.assert_array_equal(x[:, 370, 5], [-104, -117, -123])
    # pixel (0, 0) of the frame: B channel
    assert x[0, 0, 0] == pytest.approx(float(classroom_frame[0, 0, 0]) - 104, abs=2)


def test_to_frame_inverts_letterbox():
    lb = letterbox_geometry(480, 270, 640, 384, symmetric=True)
    d = Detections(np.array([[64, 12 + 40, 128, 12 + 80]]), np.array([0.9]), np.array([[[96, 12 + 60]] * 5]))
    f = to_frame(d, lb)
    np.testing.assert_allclose(f.boxes[0], [48, 30, 96, 60], atol=1e-4)
    np.testing.assert_allclose(f.landmarks[0, 0], [72, 45], atol=1e-4)
