"""toolchain/reference/contour.py on tiny hand-made inputs (answers worked out by hand)."""

import math

import numpy as np
import pytest

from toolchain.reference import contour as C


def test_face_oval_is_mediapipes_36_landmark_ring():
    # MediaPipe's FACEMESH_FACE_OVAL edge set, as published (face_mesh_connections.py)
    edges = {(10, 338), (338, 297), (297, 332), (332, 284), (284, 251), (251, 389), (389, 356),
             (356, 454), (454, 323), (323, 361), (361, 288), (288, 397), (397, 365), (365, 379),
             (379, 378), (378, 400), (400, 377), (377, 152), (152, 148), (148, 176), (176, 149),
             (149, 150), (150, 136), (136, 172), (172, 58), (58, 132), (132, 93), (93, 234),
             (234, 127), (127, 162), (162, 21), (21, 54), (54, 103), (103, 67), (67, 109), (109, 10)}
    ring = C.FACE_OVAL
    assert len(ring) == 36 == len(set(ring))
    assert {(ring[i], ring[(i + 1) % 36]) for i in range(36)} == edges
    assert max(ring) < 468


def test_crop_is_square_one_and_a_half_long_side_centred():
    crop = C.facemesh_crop_box((100, 50, 140, 110), (110, 70), (130, 70))  # 40 x 60 box
    assert (crop.cx, crop.cy, crop.width, crop.height, crop.angle) == (120, 80, 90, 90, 0)
    np.testing.assert_allclose(crop.corners(), [[75, 35], [165, 35], [165, 125], [75, 125]])
    # crop pixel (96, 96) is the box centre; (0, 0) the crop's top-left corner
    np.testing.assert_allclose(C.apply_affine(crop.to_frame(), [[96, 96], [0, 0], [192, 192]]),
                               [[120, 80], [75, 35], [165, 125]])


def test_rotated_crop_levels_the_eyes():
    # eyes on a 45 degree line (y down): the crop's x axis follows it
    crop = C.facemesh_crop_box((0, 0, 100, 100), (30, 30), (70, 70), rotate=True)
    assert crop.angle == pytest.approx(math.pi / 4)
    to_crop = crop.to_crop()
    eyes = C.apply_affine(to_crop, [[30, 30], [70, 70]])
    assert eyes[0, 1] == pytest.approx(eyes[1, 1])  # level in the crop
    assert eyes[1, 0] > eyes[0, 0]  # left eye stays on the crop's left
    # the eye distance (40 sqrt 2 px) over the crop's 150 px side, in 192 crop pixels
    assert eyes[1, 0] - eyes[0, 0] == pytest.approx(40 * math.sqrt(2) * 192 / 150)
    # eyes reported right-to-left give the same line
    assert C.facemesh_crop_box((0, 0, 100, 100), (70, 70), (30, 30), rotate=True).angle == crop.angle
    # round trip
    np.testing.assert_allclose(to_crop @ np.append(crop.to_frame() @ [5.0, 7.0, 1.0], 1.0), [5, 7], atol=1e-12)
    assert C.facemesh_crop_box((0, 0, 100, 100), (30, 30), (70, 70)).angle == 0.0  # rotate off


def test_from_rect_maps_edges_to_edges_without_squaring():
    crop = C.Crop.from_rect(10, 20, 100, 50)
    np.testing.assert_allclose(C.apply_affine(crop.to_frame(), [[0, 0], [192, 192]]), [[10, 20], [110, 70]])


def test_oval_polygon_takes_the_36_points_in_order_to_the_frame():
    lm = np.zeros((468, 3))
    for k, idx in enumerate(C.FACE_OVAL):
        lm[idx] = (k, 2 * k, 99.0)
    crop = C.Crop.from_rect(1000, 500, 384, 192)  # 2 px per crop pixel in x, 1 in y
    poly = C.oval_polygon(lm, crop)
    assert poly.shape == (36, 2)
    np.testing.assert_allclose(poly[:, 0], 1000 + 2 * np.arange(36))
    np.testing.assert_allclose(poly[:, 1], 500 + 2 * np.arange(36))


SQUARE = np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 5.0], [2.0, 5.0]])  # covers pixels x 2..5, y 1..4


def test_polygon_frame_mask_samples_pixel_centres():
    m = C.polygon_frame_mask(SQUARE, 8, 10)
    want = np.zeros((8, 10), bool)
    want[1:5, 2:6] = True
    assert (m == want).all()
    tri = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])  # x + y < 4 at pixel centres
    m = C.polygon_frame_mask(tri, 4, 4)
    ys, xs = np.mgrid[0:4, 0:4] + 0.5
    assert (m == (xs + ys < 4)).all()
    # a polygon past the frame's edges is cut, not wrapped
    assert C.polygon_frame_mask(SQUARE - 3, 8, 10).sum() == 3 * 2


def test_polygon_box_grid_samples_cell_centres_over_the_box():
    g = C.polygon_box_grid(SQUARE, (2, 1, 10, 9), grid=4)  # cells 2 px wide: centres 3, 5, 7, 9
    want = np.zeros((4, 4), np.float32)
    want[0:2, 0:2] = 1  # centres (3, 2), (5, 2), (3, 4), (5, 4) lie inside
    assert g.dtype == np.float32 and (g == want).all()
    assert C.polygon_box_grid(SQUARE, (2, 1, 6, 5)).sum() == 32 * 32
    # a concave polygon (an L): the notch is out
    ell = np.array([[0, 0], [4, 0], [4, 2], [2, 2], [2, 4], [0, 4]], np.float64)
    g = C.polygon_box_grid(ell, (0, 0, 4, 4), grid=2)
    assert (g == np.array([[1, 1], [1, 0]], np.float32)).all()


def test_polygon_bounds():
    assert C.polygon_bounds(SQUARE) == (2, 1, 6, 5)


def test_square_rect_is_mediapipes_crop_snapped_to_even_pixels():
    """Inside the frame, the box-squaring component's square is facemesh_crop_box's (unrotated) to
    within the even-pixel snap: side down by < 2 px, centre within 1 px."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        w, h = rng.uniform(12, 300, 2)
        x, y = rng.uniform(300, 1500), rng.uniform(300, 700)
        crop = C.facemesh_crop_box((x, y, x + w, y + h))
        left, t, s, s2 = C.square_rect(x, y, w, h, 1920, 1080)
        assert s == s2 and left % 2 == 0 and t % 2 == 0 and s % 2 == 0
        assert 0 <= crop.width - s < 2
        assert abs(left + s / 2 - crop.cx) <= 1 + 1e-9 and abs(t + s / 2 - crop.cy) <= 1 + 1e-9
    # at the frame's edge the square is shifted back in, not cut
    assert C.square_rect(0, 0, 100, 100, 1920, 1080) == (0, 0, 150, 150)
    assert C.square_rect(1880, 1040, 40, 40, 1920, 1080) == (1860, 1020, 60, 60)
    # larger than the frame's height: the frame's height
    assert C.square_rect(500, 0, 800, 1000, 1920, 1080) == (360, 0, 1080, 1080)
