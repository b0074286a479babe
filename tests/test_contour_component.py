"""plugins/contour/ (the FaceMesh box-squaring and contour-mask components), compiled against
DeepStream 9.1's own headers, run on metadata built in the test (NvDsObjectMeta, g_malloc'd masks,
NvDsInferTensorMeta in obj_user_meta_list as gstnvinfer_meta_utils.cpp attaches it) and compared with
the Python reference: toolchain/reference/contour.py (square_rect, oval_polygon, contour_object) and
toolchain/nvinfer/emulation/secondary.py (object_crop, nvinfer's crop arithmetic).

Skipped, with the reason, where the headers or a compiler are missing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolchain.nvinfer import contour_component as comp
from toolchain.nvinfer.emulation.secondary import object_crop
from toolchain.reference import contour as C

pytestmark = pytest.mark.skipif(comp.missing_reason() is not None,
                                reason=f"plugins/contour cannot be built here: {comp.missing_reason()}")

FW, FH = 1920, 1080
PGIE, SGIE = 1, 2
TAG, SLOT = 0x46424351, 1


def params(thr=0.5, logit=1, lscale=1.0, scale=1.5, fw=FW, fh=FH):
    return f"params {PGIE} {SGIE} {scale} {thr} {logit} {lscale} {fw} {fh}"


def f32(v):
    return float(np.float32(v))


# boxes (left, top, width, height) as float32 values: inside, odd sizes, at each edge, larger than the
# frame's height once scaled, tiny
BOXES = [(100.25, 200.5, 80.75, 101.5), (0.0, 500.0, 60.0, 80.0), (1890.5, 10.0, 29.5, 40.25),
         (900.0, 1050.0, 40.0, 30.0), (700.0, 0.0, 900.0, 1080.0), (5.0, 5.0, 1.0, 0.5), (333.3, 444.4, 55.5, 66.6),
         (101.0, 301.0, 40.0, 40.0)]  # the last: centring lands on an odd pixel, rounded to the nearest even


def test_squared_boxes_are_the_references_and_nvinfer_crops_them_unchanged():
    lines = [params()] + [f"obj {PGIE} {x} {t} {w} {h} -1" for x, t, w, h in BOXES] + ["obj 7 10 10 50 50 -1",
                                                                                           "square", "print"]
    out = comp.run_spec(lines)[0]
    assert out["returned"] == len(BOXES)
    for (left, t, w, h), o in zip(BOXES, out["objects"]):
        want = C.square_rect(f32(left), f32(t), f32(w), f32(h), FW, FH)
        assert o["rect"] == list(want), (left, t, w, h)
        x, y, s, _ = want
        assert x % 2 == 0 and y % 2 == 0 and s % 2 == 0 and 0 <= x <= FW - s and 0 <= y <= FH - s
        # nvinfer's get_converted_buffer crops exactly this square (no rounding left to do)
        c = object_crop(*want, 192, 192)
        assert (c.src_left, c.src_top, c.src_width, c.src_height) == want
        # the detector's box is kept, bit for bit, for the fallback
        assert o["misc"][SLOT] == TAG
        raw = np.array(o["misc"][SLOT + 1:SLOT + 3], np.int64).view(np.uint32)  # little-endian: low word first
        got = np.array([raw[1], raw[0], raw[3], raw[2]], np.uint32).view(np.float32)
        assert list(got) == [f32(v) for v in (left, t, w, h)]
    other = out["objects"][-1]  # another gie's object is left alone
    assert other["rect"] == [10, 10, 50, 50] and other["misc"] == [0, 0, 0, 0]
    # MediaPipe's crop for a box well inside the frame: 1.5 x the long side, centred (to the even pixel)
    x, y, s, _ = out["objects"][0]["rect"]
    assert s == 152 and abs(x + s / 2 - (100.25 + 80.75 / 2)) <= 1 and abs(y + s / 2 - (200.5 + 101.5 / 2)) <= 1


def _landmarks(rng, cx=96.0, cy=100.0, ax=55.0, ay=70.0, tilt=0.2):
    """468 landmarks in crop pixels: the 36 face-oval points on a tilted, noisy ellipse, the rest
    inside it (FaceMesh's layout for what the components read)."""
    lm = np.column_stack([rng.uniform(60, 130, 468), rng.uniform(60, 140, 468), rng.normal(0, 5, 468)])
    th = np.linspace(-math.pi / 2, 3 * math.pi / 2, 36, endpoint=False)  # from the forehead, clockwise on screen
    r = 1 + rng.normal(0, 0.03, 36)
    ex, ey = ax * r * np.cos(th), ay * r * np.sin(th)
    lm[list(C.FACE_OVAL), 0] = cx + ex * math.cos(tilt) - ey * math.sin(tilt)
    lm[list(C.FACE_OVAL), 1] = cy + ex * math.sin(tilt) + ey * math.cos(tilt)
    return lm.astype(np.float32)


def _reference(rect, lm, presence_logit, thr, maintain=False, symmetric=False, lscale=1.0):
    crop = object_crop(*rect, 192, 192, maintain, symmetric).crop()
    lm = np.asarray(lm, np.float64).copy()
    lm[:, :2] *= lscale
    poly = C.oval_polygon(lm, crop)
    return poly, C.contour_object(poly, 1.0 / (1.0 + math.exp(-float(np.float32(presence_logit)))), thr, FW, FH)


def _check_contoured(o, ref):
    (x1, y1, x2, y2), grid = ref
    assert o["rect"] == pytest.approx([f32(x1), f32(y1), f32(x2 - x1), f32(y2 - y1)], abs=1e-3)
    assert o["mask_wh"] == [32, 32] and o["threshold"] == 0.5
    mask = np.array(o["mask"], np.float32).reshape(32, 32)
    assert (mask == grid).all(), f"{int((mask != grid).sum())} of 1024 cells differ"
    assert o["misc"][SLOT:SLOT + 3] == [0, 0, 0]


def _restored(o, box, mask_base):
    assert [f32(v) for v in o["rect"]] == [f32(v) for v in box]  # bit for bit (%.9g round-trips a float)
    if mask_base is None:
        assert o["mask_wh"] == [0, 0]
    else:
        assert o["mask"] == pytest.approx([mask_base + k * 1e-4 for k in range(1024)], abs=1e-6)
    assert o["misc"][SLOT:SLOT + 3] == [0, 0, 0]


def test_contour_mask_and_box_equal_the_reference_and_no_face_falls_back_to_the_detector():
    rng = np.random.default_rng(16)
    lms = [_landmarks(rng), _landmarks(rng, cx=90, ax=70, ay=80, tilt=-0.4), _landmarks(rng),
           _landmarks(rng, cx=150, cy=60, ax=80, ay=75), _landmarks(rng)]
    boxes = [BOXES[0], BOXES[1], BOXES[2], BOXES[3], BOXES[6], (50.0, 60.0, 40.0, 40.0)]
    lines = [params(thr=0.5, logit=1)] + [f"obj {PGIE} {x} {t} {w} {h} 0.25" for x, t, w, h in boxes]
    lines += [f"obj {PGIE} 800 300 60 80 -1", "square", "print"]
    out0 = comp.run_spec(lines)[0]["objects"]
    sq = [o["rect"] for o in out0]
    # logits: face, face, no face (sigmoid 0.27), face at the bottom edge, face with the SGIE's tensor of
    # another gie only (-> fallback); object 5 has no tensor at all (too small for the SGIE: fallback)
    logits = [4.0, 2.5, -1.0, 3.0, 5.0]
    uids = [SGIE, SGIE, SGIE, SGIE, 9]
    lines2 = list(lines[:-1]) + [f"tensor {i} {uids[i]} 192 192 0 0 {logits[i]} {{lm{i}}}" for i in range(5)]
    lines2 += ["tensor 6 2 192 192 0 0 3.0 {lm0}", "apply", "print"]
    res = comp.run_spec(lines2, lms)[0]
    objs = res["objects"]
    for i in (0, 1, 3):
        _, ref = _reference(sq[i], lms[i], logits[i], 0.5)
        assert ref is not None
        _check_contoured(objs[i], ref)
        assert 0.2 < ref[1].mean() < 0.95  # an oval inside its bounds, not a full or empty box
    _check_contoured(objs[6], _reference(sq[6], lms[0], 3.0, 0.5)[1])  # no detector mask: one is made
    for i in (2, 4, 5):
        _restored(objs[i], boxes[i], 0.25)
    assert res["returned"] == 4
    # the bottom-edge face's oval is cut at the frame
    assert objs[3]["rect"][1] + objs[3]["rect"][3] <= FH + 1e-3


def test_crop_offsets_are_recomputed_for_odd_boxes_and_letterboxed_crops():
    """A box moved between the two components to odd, non-square values: nvinfer's crop rounds it
    (left/top up to even, width/height down to even) and letterboxes it; the component must map the
    landmarks back through the same arithmetic."""
    rng = np.random.default_rng(7)
    lm = _landmarks(rng, cx=96, cy=96, ax=60, ay=60, tilt=0.0)
    cases = [((301.7, 151.3, 205.9, 141.6), False, False), ((301.7, 151.3, 205.9, 141.6), True, False),
             ((301.7, 151.3, 141.6, 205.9), True, True), ((11.0, 13.0, 99.0, 97.0), True, True)]
    lines = [params(logit=0, thr=0.9, lscale=192.0)] + [f"obj {PGIE} 10 10 50 50 -1" for _ in cases] + ["square"]
    lines += [f"rect {i} {r[0]} {r[1]} {r[2]} {r[3]}" for i, (r, _, _) in enumerate(cases)]
    lms = [lm / 192.0 for _ in cases]  # normalised landmarks, as a model may give them
    lines += [f"tensor {i} {SGIE} 192 192 {int(m)} {int(s)} 0.95 {{lm{i}}}" for i, (_, m, s) in enumerate(cases)]
    lines += ["apply", "print"]
    objs = comp.run_spec(lines, lms)[0]["objects"]
    for (rect, m, s), o in zip(cases, objs):
        r32 = tuple(f32(v) for v in rect)
        crop = object_crop(*r32, 192, 192, m, s).crop()
        poly = C.oval_polygon(lm.astype(np.float64), crop)
        ref = C.contour_object(poly, float(np.float32(0.95)), f32(0.9), FW, FH)
        _check_contoured(o, ref)
    # the padded side really moves the polygon: the letterboxed crop is not the stretched one
    a = C.oval_polygon(lm, object_crop(*cases[0][0], 192, 192, False, False).crop())
    b = C.oval_polygon(lm, object_crop(*cases[0][0], 192, 192, True, False).crop())
    assert np.abs(a - b).max() > 10


def test_custom_library_compiles_against_nvidias_videotemplate_headers(tmp_path):
    import subprocess

    from toolchain.nvinfer.conformance import cuda_includes

    if cuda_includes() is None:
        pytest.skip("no CUDA headers (nvdscustomlib_interface.hpp needs cuda_runtime_api.h)")
    obj = comp.check_custom_library(tmp_path)
    syms = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True).stdout
    # the factory gstnvdsvideotemplate dlsyms, and the two components it calls
    assert " T CreateCustomAlgoCtx" in syms
    assert " U fbtool_contour_square" in syms and " U fbtool_contour_apply" in syms
