"""The hold/mask component of fbtool's DeepStream blur (plugins/dsblur/ds_hold.cpp), compiled against
NVIDIA's real DeepStream 9.1 headers and run on metadata built in the test (NvDsBatchMeta, NvDsFrameMeta,
NvDsObjectMeta, the NVDS_TRACKER_SHADOW_LIST_META user meta laid out as gst-nvtracker fills it), frame
by frame against its one Python emulation (toolchain/nvinfer/emulation/tracker.py, HoldRule). The
customlib that runs it inside nvdsvideotemplate is compiled against gst-nvdsvideotemplate's interface."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.nvinfer import dsblur
from toolchain.nvinfer.emulation import ObjectMeta
from toolchain.nvinfer.emulation.tracker import UNTRACKED, DeepStreamHold, HoldRule, IouTracker, Tracked

pytestmark = pytest.mark.skipif(dsblur.missing_reason() is not None,
                                reason=f"cannot compile against NVIDIA's headers here: {dsblur.missing_reason()}")

MASK = np.array([[0.9, 0.2], [0.6, 0.4]], np.float32)  # threshold 0.5 -> [[1, 0], [1, 0]]


def obj(box, mask=MASK, cls=0, thr=0.5) -> ObjectMeta:
    return ObjectMeta(cls, 0.9, float(box[0]), float(box[1]), float(box[2]), float(box[3]), mask, thr)


def spec(frames, hold: int, classes=(0,), mask: str = "own") -> str:
    """frames: [(pad, frame_num, [Tracked], shadow ids)] per batch (a list of such tuples) -> driver spec."""
    lines = [f"hold {hold}", "classes " + " ".join(map(str, classes)), "gie 1", f"mask {mask}"]
    for batch in frames:
        lines.append("batch")
        for pad, num, objs, _ in batch:
            lines.append(f"frame {pad} {num}")
            for t in objs:
                o = t.obj
                m = o.mask if o.mask is not None else np.zeros((0, 0), np.float32)
                vals = " ".join(repr(float(v)) for v in m.ravel())
                lines.append(f"obj {'-' if t.id == UNTRACKED else t.id} {o.class_id} 1 {o.left} {o.top} {o.width} "
                             f"{o.height} {o.mask_threshold} {m.shape[1] if m.size else 0} {m.shape[0] if m.size else 0} {vals}")
        for pad, _, _, shadow in batch:
            if shadow:
                lines.append(f"shadow {pad} " + " ".join(map(str, shadow)))
        lines.append("run")
    return "\n".join(lines) + "\n"


def emulate(frames, hold: int, classes=(0,), mask: str = "own") -> list[dict]:
    rule = HoldRule(hold, tuple(classes), mask)
    out = []
    for batch in frames:
        for pad, num, objs, shadow in batch:
            got = rule.step(num, objs, shadow, pad)
            out.append({"pad": pad, "frame": num, "targets": [t.to_json() for t in got]})
    return out


def same(cpp: list[dict], py: list[dict]) -> None:
    assert len(cpp) == len(py)
    for c, p in zip(cpp, py):
        assert (c["pad"], c["frame"]) == (p["pad"], p["frame"])
        assert len(c["targets"]) == len(p["targets"]), (c, p)
        for a, b in zip(c["targets"], p["targets"]):
            for k in ("id", "class", "held", "misses", "mask_from", "mask_w", "mask_h"):
                assert a[k] == b[k], (k, c["frame"], a, b)
            np.testing.assert_allclose(a["box"], b["box"], rtol=1e-5)
            np.testing.assert_array_equal(a["mask"], b["mask"])


def run_both(frames, hold: int, classes=(0,), mask: str = "own") -> list[dict]:
    cpp = dsblur.run_hold(spec(frames, hold, classes, mask))
    same(cpp, emulate(frames, hold, classes, mask))
    return cpp


def seq(per_frame, pad: int = 0):
    """[(objs, shadow)] -> one frame per batch."""
    return [[(pad, n, objs, shadow)] for n, (objs, shadow) in enumerate(per_frame)]


def test_hold_across_a_gap_keeps_last_box_and_mask():
    face = Tracked(obj((100, 50, 40, 48)), 3)
    moved = Tracked(obj((110, 52, 40, 48), np.array([[0.1, 0.7], [0.8, 0.2]], np.float32)), 3)
    frames = seq([([face], []), ([moved], []), ([], [3]), ([], [3]), ([], [3]), ([face], [])])
    out = run_both(frames, hold=4)
    for n in (2, 3, 4):
        (t,) = out[n]["targets"]
        assert t["held"] and t["misses"] == n - 1 and t["mask_from"] == "held"
        assert t["box"] == [110, 52, 40, 48] and t["mask"] == [0, 1, 1, 0]  # the LAST box and mask
        assert out[n]["num_obj_meta"] == 1  # re-created in the frame's object list
    assert not out[5]["targets"][0]["held"]


def test_hold_expires_after_hold_frames():
    face = Tracked(obj((10, 10, 30, 30)), 1)
    frames = seq([([face], [])] + [([], [1])] * 6)
    out = run_both(frames, hold=3)
    assert [len(f["targets"]) for f in out] == [1, 1, 1, 1, 0, 0, 0]
    assert [f["targets"][0]["misses"] for f in out[1:4]] == [1, 2, 3]


def test_only_shadow_tracked_faces_are_held():
    """A face nvtracker dropped (not in the shadow list) is not re-created, whatever the hold."""
    face = Tracked(obj((10, 10, 30, 30)), 1)
    out = run_both(seq([([face], []), ([], []), ([], [1])]), hold=5)
    assert out[1]["targets"] == [] and out[2]["targets"][0]["misses"] == 2


def test_face_appearing_mid_clip_is_blurred_from_its_first_frame():
    """With operate-on-class-ids set, nvtracker leaves a detection it does not track yet in the object
    list with UNTRACKED_OBJECT_ID (removeUntrackedObjects): it is blurred; once tracked, it is held."""
    a = Tracked(obj((10, 10, 30, 30)), 1)
    new_untracked = Tracked(obj((200, 40, 24, 30)), UNTRACKED)
    new_tracked = Tracked(obj((202, 40, 24, 30)), 9)
    frames = seq([([a], []), ([a], []), ([a, new_untracked], []), ([a, new_tracked], []), ([a], [9])])
    out = run_both(frames, hold=2)
    ids = [[t["id"] for t in f["targets"]] for f in out]
    assert ids == [[1], [1], [1, -1], [1, 9], [1, 9]]
    assert out[2]["targets"][1]["mask"] == [1, 0, 1, 0]
    assert out[4]["targets"][1]["held"]


def test_empty_mask_is_made_non_empty():
    faint = np.full((2, 2), 0.1, np.float32)  # nothing reaches the threshold: an empty binary mask
    frames = seq([
        ([Tracked(obj((10, 10, 30, 30), None), UNTRACKED)], []),  # no mask at all (mask_size 0)
        ([Tracked(obj((10, 10, 30, 30), faint), 4)], []),  # tracked, no mask before: whole box
        ([Tracked(obj((10, 10, 30, 30)), 4)], []),
        ([Tracked(obj((10, 10, 30, 30), faint), 4)], []),  # empty again: the track's last mask
        ([], [4]),
    ])
    out = run_both(frames, hold=3)
    got = [(f["targets"][0]["mask_from"], f["targets"][0]["mask"]) for f in out]
    assert got == [("box", [1]), ("box", [1]), ("own", [1, 0, 1, 0]), ("held", [1, 0, 1, 0]), ("held", [1, 0, 1, 0])]
    for f in out:
        t = f["targets"][0]
        assert t["mask_size"] == 4 * t["mask_w"] * t["mask_h"] and any(t["mask"])


def test_box_rule_blurs_every_face_over_its_whole_box():
    """The one-model rule (mask:box, the default of the component and of HoldRule): detected, untracked
    and held faces all get the whole box, whatever mask nvinfer attached (a contour, a faint one, none)."""
    faint = np.full((2, 2), 0.1, np.float32)
    frames = seq([
        ([Tracked(obj((10, 10, 30, 30)), 4), Tracked(obj((60, 10, 30, 30), None), UNTRACKED)], []),
        ([Tracked(obj((12, 10, 30, 30), faint), 4)], []),
        ([], [4]),
    ])
    out = run_both(frames, hold=3, mask="box")
    got = [[(t["mask_from"], t["mask"], t["held"]) for t in f["targets"]] for f in out]
    assert got == [[("box", [1], False), ("box", [1], False)], [("box", [1], False)], [("box", [1], True)]]
    assert HoldRule(3).mask == "box" and dsblur.run_hold("hold 1\nbatch\nframe 0 0\n"
                                                         f"obj 1 0 1 0 0 8 8 0.5 2 2 {' '.join(['0.9'] * 4)}\nrun\n"
                                                         )[0]["targets"][0]["mask_from"] == "box"


def test_mask_is_binarised_at_its_threshold():
    m = np.array([[0.0, 0.29, 0.3, 0.31], [1.0, 0.5, 0.7, 0.05]], np.float32)
    frames = seq([([Tracked(obj((0, 0, 8, 4), m, thr=0.3), 2), Tracked(obj((20, 0, 8, 4), m, thr=0.0), 5)], [])])
    out = run_both(frames, hold=1)
    assert out[0]["targets"][0]["mask"] == [0, 0, 1, 1, 1, 1, 1, 0]
    assert out[0]["targets"][1]["mask"] == [0, 0, 0, 0, 1, 1, 1, 0]  # threshold unset: 0.5


def test_other_classes_and_streams_are_kept_apart():
    a0 = Tracked(obj((10, 10, 30, 30)), 1)
    plate = Tracked(obj((50, 50, 30, 10), cls=1), 2)
    a1 = Tracked(obj((70, 10, 30, 30)), 1)  # the same id in another stream is another face
    frames = [[(0, 0, [a0, plate], []), (1, 0, [a1], [])], [(0, 1, [], [1, 2]), (1, 1, [], [])]]
    out = run_both(frames, hold=2)
    assert [t["id"] for t in out[0]["targets"]] == [1]
    assert out[2]["targets"][0]["box"] == [10, 10, 30, 30] and out[3]["targets"] == []


def test_long_sequence_matches_the_emulation():
    """An IOU-tracked clip of drifting faces with dropouts, untracked and maskless objects: the compiled
    component and the Python emulation agree frame by frame."""
    rng = np.random.default_rng(7)
    tracker = IouTracker(max_shadow_age=4, min_iou=0.3, classes=(0,))
    faces = [np.array([40.0 + 120 * i, 60.0, 36.0, 44.0]) for i in range(4)]
    frames, n_held = [], 0
    for n in range(60):
        objs = []
        for i, f in enumerate(faces):
            f[:2] += rng.integers(-2, 3, 2)
            if rng.random() < 0.3:  # the detector misses it
                continue
            m = rng.random((4, 3)).astype(np.float32) * (0.2 if rng.random() < 0.1 else 1.0)
            objs.append(obj(f.copy(), None if rng.random() < 0.1 else m, cls=int(i == 3)))
        tracked, shadow = tracker.step(objs)
        frames.append([(0, n, tracked, shadow)])
    out = run_both(frames, hold=4)
    n_held = sum(t["held"] for f in out for t in f["targets"])
    assert n_held > 10 and all(t["class"] == 0 for f in out for t in f["targets"])


def test_deepstream_hold_blurs_a_new_face_from_its_first_frame_and_holds_it():
    face = obj((10, 10, 30, 30))
    out = DeepStreamHold(hold=2, min_iou=0.3, classes=(0,)).run([[], [face], [face], [], [], [], [face]])
    assert [[(t.id, t.held) for t in f] for f in out] == [[], [(0, False)], [(0, False)], [(0, True)], [(0, True)], [],
                                                          [(1, False)]]


def test_customlib_compiles_against_nvdsvideotemplate():
    """customlib.cpp implements NVIDIA's IDSCustomLibrary (override checks every virtual) and calls the
    blur ABI of fbtool_dsblur.h: a change in NVIDIA's interface fails here."""
    folder = dsblur.build("check")
    assert (folder / "customlib.o").is_file()
    warnings = (folder / ".done").read_text()
    assert "customlib.cpp" not in warnings and "ds_hold.cpp" not in warnings, warnings


def test_customlib_needs_only_deepstream_cuda_and_the_kernel():
    """Linked with --no-undefined against GLib/GStreamer only, what stays unresolved is what the Makefile's
    DeepStream libraries declare in NVIDIA's own headers, the CUDA runtime, and the kernel's C ABI; the
    factory symbol gstnvdsvideotemplate dlsym's is exported unmangled."""
    import re

    from toolchain.nvinfer import conformance
    from toolchain.nvinfer.names import DSBLUR_SYMBOL

    missing, exported = dsblur.link_check()
    assert DSBLUR_SYMBOL in exported
    kernel = {"fbtool_dsblur_rgba", "fbtool_dsblur_nv12"}
    assert kernel <= set(missing)
    headers = "".join(p.read_text(errors="replace") for p in conformance.find_sources().include.glob("*.h"))
    ds = [s for s in missing if s not in kernel and not s.startswith(("cuda", "__cuda"))]
    assert ds, missing
    for sym in ds:
        assert re.search(rf"\b{re.escape(sym)}\s*\(", headers), f"{sym} is declared by no DeepStream header"
    assert {"nvds_acquire_obj_meta_from_pool", "nvds_add_obj_meta_to_frame", "gst_buffer_get_nvds_batch_meta"} <= set(ds)
