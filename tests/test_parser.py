"""The C++ nvinfer parser (plugins/), driven through the C++ harness exactly as nvinfer calls it,
against the Python reference (toolchain.reference) on real frames; malformed inputs; the ABI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolchain.compare.metrics import match
from toolchain.errors import FbtoolError
from toolchain.nvinfer.emulation.reference_parser import content_region
from toolchain.nvinfer.harness import ParserHarness, to_detections
from toolchain.nvinfer.names import PARSE_BBOX_FUNC as BBOX_FUNC
from toolchain.nvinfer.names import PARSE_MASK_FUNC as MASK_FUNC
from toolchain.parser import build_parser
from toolchain.parser.build import PLUGINS, find_deepstream_includes
from toolchain.reference.anchors import anchors_for
from toolchain.reference.decode import decode_boxes, decode_landmarks
from toolchain.reference.detections import Detections, candidates, postprocess, split_batch
from toolchain.reference.masks import ellipse_params, mask_iou, rasterize_mask
from toolchain.reference.nms import nms

W, H = 640, 384
N = 10080
# The frame's part of the 640x384 input (the deployment's 1920x1080 streammux frame, letterboxed):
# the parser clips boxes to it, not to the padded input.
CX1, CY1, CX2, CY2 = content_region(W, H, True, False)


@pytest.fixture(scope="module")
def build(recipe, tmp_path_factory):
    return build_parser(recipe, tmp_path_factory.mktemp("parser9"))


@pytest.fixture(scope="module")
def harness(build):
    with ParserHarness(build) as h:
        yield h


@pytest.fixture(scope="module")
def frame_outputs(recipe, torch_runner, classroom_frame, headpose_frame):
    """Raw heads of real frames (one dict per frame, batch axis stripped as nvinfer does)."""
    from toolchain.media import read_frames
    from toolchain.reference.preprocess import preprocess_batch

    frames = [classroom_frame, headpose_frame] + read_frames("face-demographics-walking.gif", max_frames=12)[::6]
    x, _ = preprocess_batch(frames, recipe)
    outs = split_batch(torch_runner.infer({recipe.input.name: x}))
    assert sum(len(candidates(o, recipe, W, H, recipe.thresholds.score)) for o in outs) > 10
    return outs


def clipped(dets: Detections) -> Detections:
    b = dets.boxes.copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], CX1, CX2)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], CY1, CY2)
    return Detections(b, dets.scores, dets.landmarks, dets.classes)


def assert_same_faces(objs, ref: Detections, box_px: float = 0.5):
    """One-to-one: every parser object matches one reference candidate and vice versa."""
    assert objs is not None, "the parser returned false"
    cand = to_detections(objs)
    assert len(cand) == len(ref)
    m = match(clipped(ref), cand, iou_threshold=0.5, with_masks=False)
    assert (m.tp, m.fp, m.fn) == (len(ref), 0, 0)
    assert max(m.box_errors, default=0.0) <= box_px
    assert max(m.score_deltas, default=0.0) <= 1e-6
    assert all(o["class_id"] == 0 for o in objs)


def reference_masks(ref: Detections, recipe) -> list[np.ndarray]:
    """The reference formulas: ellipse of the whole face, rasterised over the emitted box (clipped to
    the frame's part of the input)."""
    m, res = recipe.mask, recipe.mask.resolution
    out = []
    for i, box in enumerate(ref.boxes):
        p = ellipse_params(box, ref.landmarks[i], m.max_tilt_deg)
        x0, x1 = np.clip(box[[0, 2]], CX1, CX2)
        y0, y1 = np.clip(box[[1, 3]], CY1, CY2)
        out.append(rasterize_mask(p, x0, y0, x1, y1, res, res, m.feather))
    return out


def paired_mask_ious(objs, ref: Detections, recipe) -> list[float]:
    """Mask IoU of each parser object with the reference face whose box it overlaps most."""
    from toolchain.reference.nms import iou_matrix

    ious = iou_matrix(to_detections(objs).boxes, clipped(ref).boxes)
    masks = reference_masks(ref, recipe)
    return [mask_iou(o["mask"], masks[int(np.argmax(ious[i]))]) for i, o in enumerate(objs)]


# ---------------------------------------------------------------- build and ABI
def test_build_exports_symbols_and_generated_params(build, recipe, tmp_path):
    assert build.header == "fbtool" and build.ds_major == 9
    assert set(build.symbols) == {BBOX_FUNC, MASK_FUNC}
    text = build.params_header.read_text()
    # One source of truth: every model parameter in the header comes from the recipe.
    assert "kSteps[kNumLevels] = {8, 16, 32};" in text
    assert "kMinSizes[6] = {10.0, 20.0, 32.0, 64.0, 128.0, 256.0};" in text
    assert 'kBoxesLayer = "loc";' in text and "kMaskResolution = 32;" in text and "kVariance1 = 0.2;" in text
    assert "kNmsIou = 0.4;" in text and "kPreNmsTopK = 5000;" in text and "kTopK = 750;" in text
    # the deployment's streammux frame and letterbox (the parser clips boxes to the frame's part of the input)
    assert "kFrameWidth = 1920;" in text and "kFrameHeight = 1080;" in text
    assert "kLetterbox = true;" in text and "kSymmetricPadding = false;" in text
    assert not list(Path(build.lib).parent.parent.glob(".parser-*")), "temporary build folder left behind"
    again = build_parser(recipe, Path(build.lib).parent.parent)
    assert not again.rebuilt and again.lib == build.lib


@pytest.mark.parametrize("major,obj_size", [(8, 24), (9, 28)])
def test_abi_layouts_compiled(recipe, tmp_path, major, obj_size):
    b = build_parser(recipe, tmp_path, ds_major=major)
    with ParserHarness(b) as h:
        abi = h.abi()
    assert abi == {"object_size": obj_size, "mask_info_size": 48, "layer_info_size": 72, "layer_buffer_offset": 56,
                   "mask_offset": 24, "network_info_size": 12, "detection_params_size": 64, "dims_size": 40}


def test_abi_header_rejects_unknown_layout(tmp_path):
    src = tmp_path / "t.cpp"
    src.write_text('#include "fbtool_nvdsinfer.h"\n')
    cmd = ["g++", "-std=c++17", "-fsyntax-only", f"-I{PLUGINS / 'include'}", str(src)]
    assert subprocess.run(cmd + ["-DFBTOOL_DS_MAJOR=8"], capture_output=True).returncode == 0
    bad = subprocess.run(cmd + ["-DFBTOOL_DS_MAJOR=7"], capture_output=True, text=True)
    assert bad.returncode != 0 and "FBTOOL_DS_MAJOR" in bad.stderr


def test_builds_against_deepstream_headers_when_present(recipe, tmp_path):
    # A stand-in include folder that routes to the documented layout: checks the plumbing
    # (detection, -DFBTOOL_USE_DEEPSTREAM_HEADERS, include path), not DeepStream itself.
    inc = tmp_path / "ds" / "sources" / "includes"
    inc.mkdir(parents=True)
    (inc / "nvdsinfer_custom_impl.h").write_text(f'#include "{PLUGINS / "include" / "fbtool_nvdsinfer.h"}"\n')
    assert find_deepstream_includes(tmp_path / "ds") == inc
    b = build_parser(recipe, tmp_path / "run", deepstream_root=tmp_path / "ds")
    assert b.header == "deepstream" and set(b.symbols) == {BBOX_FUNC, MASK_FUNC}
    with pytest.raises(FbtoolError, match="nvdsinfer_custom_impl.h"):
        build_parser(recipe, tmp_path / "run2", deepstream_root=tmp_path / "nowhere")


def test_recorded_layout_is_the_compiled_one(recipe, tmp_path):
    """build_info's ds_major comes from what was compiled (the harness's sizeof), not --ds-major: a
    DeepStream 8.0-layout header built with --ds-major 9 is recorded as 8, and `fbtool deepstream`
    then refuses it for a 9.x target."""
    inc = tmp_path / "ds8" / "sources" / "includes"
    inc.mkdir(parents=True)
    (inc / "nvdsinfer_custom_impl.h").write_text(
        f'#undef FBTOOL_DS_MAJOR\n#define FBTOOL_DS_MAJOR 8\n#include "{PLUGINS / "include" / "fbtool_nvdsinfer.h"}"\n')
    b = build_parser(recipe, tmp_path / "run8", deepstream_root=tmp_path / "ds8", ds_major=9)
    info = json.loads((tmp_path / "run8" / "parser" / "build_info.json").read_text())
    assert b.ds_major == 8 and info["ds_major"] == 8 and info["object_size"] == 24 and info["requested_ds_major"] == 9
    b9 = build_parser(recipe, tmp_path / "run9", ds_major=9)
    assert b9.ds_major == 9


def test_fbtool_abi_header_matches_nvidias_91_headers(recipe, tmp_path):
    """The parser built against NVIDIA's real DeepStream 9.1 headers (../shared/third_party) has the
    layout fbtool's own header pins for 9.x, and is recorded as 9 whatever --ds-major says."""
    from toolchain.nvinfer import conformance
    from toolchain.nvinfer.harness import ParserHarness

    src = conformance.find_sources()
    if src is None or conformance.missing_reason():
        pytest.skip(f"no DeepStream headers: {conformance.missing_reason()}")
    root = tmp_path / "ds91"
    (root / "sources").mkdir(parents=True)
    (root / "sources" / "includes").symlink_to(src.include)
    real = build_parser(recipe, tmp_path / "real", deepstream_root=root, ds_major=8)
    ours = build_parser(recipe, tmp_path / "ours", ds_major=9)
    assert real.header == "deepstream" and real.ds_major == 9
    assert ParserHarness(real).abi() == ParserHarness(ours).abi()


def test_build_errors_are_reported(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-g++")
    with pytest.raises(FbtoolError, match="not installed") as e:
        build_parser(recipe, tmp_path)
    assert e.value.hint and "g++" in e.value.hint
    with pytest.raises(FbtoolError, match="ds_major"):
        build_parser(recipe, tmp_path, ds_major=7)


def test_cli_records_stage(tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli
    from toolchain.runfolder import RunFolder

    res = CliRunner().invoke(cli, ["build-parser", "--recipe", "retinaface_mnet025", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    run = RunFolder(tmp_path)
    assert run.artifact("build-parser", "lib").name == "libnvdsinfer_fbtool.so"
    assert run.artifact("build-parser", "harness").name == "libfbtool_harness.so"
    assert run.stage("build-parser")["info"]["params_source"] == "recipe"


# ---------------------------------------------------------------- agreement with the reference
def test_bbox_matches_reference_candidates(harness, recipe, frame_outputs):
    thr = recipe.thresholds.score
    for out in frame_outputs:
        objs = harness.parse_bbox(out, W, H, [thr])
        assert_same_faces(objs, candidates(out, recipe, W, H, thr))
        assert all(o["rotation_angle"] == 0.0 for o in objs)  # value-initialised 9.x field


def test_bbox_after_nms_matches_reference_postprocess(harness, recipe, frame_outputs):
    t = recipe.thresholds
    total = 0
    for out in frame_outputs:
        cand = to_detections(harness.parse_bbox(out, W, H, [t.score]))
        kept = cand.take(nms(cand.boxes, cand.scores, t.nms_iou, t.top_k))
        ref = postprocess(out, recipe)
        m = match(clipped(ref), kept, with_masks=False)
        assert (m.fp, m.fn) == (0, 0) and max(m.box_errors, default=0) <= recipe.tolerances.box_px
        total += m.tp
    assert total >= 5


def test_mask_matches_reference(harness, recipe, frame_outputs):
    """nvinfer clusters nothing for instance masks (cluster-mode=4 only), so the mask parser runs the
    reference NMS itself: its faces are reference.postprocess()'s, best first, with their masks."""
    thr, res = recipe.thresholds.score, recipe.mask.resolution
    tilted = 0
    for out in frame_outputs:
        objs = harness.parse_mask(out, W, H, [thr])
        ref = postprocess(out, recipe, score_threshold=thr)
        assert_same_faces(objs, ref)
        assert len(objs) < len(candidates(out, recipe, W, H, thr)) or len(objs) <= 1
        # Same order as the reference's NMS (best first), so pair by index.
        for o, rm, i in zip(objs, reference_masks(ref, recipe), range(len(ref))):
            assert abs(o["confidence"] - ref.scores[i]) < 1e-6
            assert o["mask"].shape == (res, res) and o["mask_size"] == res * res * 4
            assert mask_iou(o["mask"], rm) >= recipe.tolerances.mask_iou
            # the reference's probabilities inside the contour, exactly 0 outside it (nvdsosd blurs every
            # non-zero cell: docs/deepstream.md)
            assert np.abs(o["mask"] - np.where(rm >= 0.5, rm, 0)).max() < 1e-3
            tilted += abs(ellipse_params(ref.boxes[i], ref.landmarks[i])[4]) > 0.05
    assert tilted > 0, "no tilted face: the landmark orientation was not exercised"


def test_fp16_layers(harness, recipe, frame_outputs):
    thr = recipe.thresholds.score
    for out in frame_outputs[:2]:
        half = {k: v.astype(np.float16) for k, v in out.items()}
        up = {k: v.astype(np.float32) for k, v in half.items()}
        assert_same_faces(harness.parse_bbox(half, W, H, [thr]), candidates(up, recipe, W, H, thr))
        objs = harness.parse_mask(half, W, H, [thr])
        ref = postprocess(up, recipe, score_threshold=thr)
        assert_same_faces(objs, ref)
        assert min(paired_mask_ious(objs, ref, recipe), default=1.0) >= recipe.tolerances.mask_iou
    mixed = dict(frame_outputs[0], conf=frame_outputs[0]["conf"].astype(np.float16))
    assert harness.parse_bbox(mixed, W, H, [thr])


def test_onnxruntime_outputs(harness, recipe, onnx_path, classroom_frame, headpose_frame):
    from toolchain.reference.preprocess import preprocess_batch
    from toolchain.runners import OrtRunner

    x, _ = preprocess_batch([classroom_frame, headpose_frame], recipe)
    runner = OrtRunner(onnx_path)
    for out in split_batch(runner.infer({recipe.input.name: x})):
        # engine I/O order is not output-blob-names order: the parser must find layers by name
        order = list(reversed(runner.output_names))
        ref = candidates(out, recipe, W, H, recipe.thresholds.score)
        assert len(ref) > 0
        assert_same_faces(harness.parse_bbox(out, W, H, [recipe.thresholds.score], order=order), ref)
        assert_same_faces(harness.parse_mask(out, W, H, [recipe.thresholds.score], order=order),
                          postprocess(out, recipe))


def test_decoded_layout(harness, recipe, frame_outputs):
    thr = recipe.thresholds.score
    anchors = anchors_for(recipe, W, H)
    var = recipe.anchors.variance
    for out in frame_outputs[:3]:
        decoded = {
            "det_boxes": decode_boxes(out["loc"], anchors, var, W, H),
            "det_scores": np.ascontiguousarray(out["conf"][:, 1]),
            "det_landmarks": decode_landmarks(out["landmarks"], anchors, var, W, H).reshape(N, 10),
        }
        ref = candidates(out, recipe, W, H, thr)
        assert_same_faces(harness.parse_bbox(decoded, W, H, [thr]), ref)
        objs = harness.parse_mask(decoded, W, H, [thr])
        ref = postprocess(out, recipe, score_threshold=thr)
        assert_same_faces(objs, ref)
        assert min(paired_mask_ious(objs, ref, recipe), default=1.0) >= recipe.tolerances.mask_iou
        # [K, 1] scores and a top-K subset are the same layout
        k = np.argsort(-decoded["det_scores"])[:50]
        top = {"det_boxes": decoded["det_boxes"][k], "det_scores": decoded["det_scores"][k, None],
               "det_landmarks": decoded["det_landmarks"][k]}
        assert len(harness.parse_bbox(top, W, H, [thr])) == len(candidates(out, recipe, W, H, thr))
        assert len(harness.parse_mask(top, W, H, [thr])) == len(ref)


def test_mask_parser_nms_settings(harness, recipe, frame_outputs):
    """Clustering settings are the recipe's (baked into the header): no kept pair overlaps more
    than nms_iou, and a low threshold (many candidates) still agrees with the reference."""
    from toolchain.reference.nms import iou_matrix

    for out in frame_outputs:
        objs = harness.parse_mask(out, W, H, [0.05])
        assert_same_faces(objs, postprocess(out, recipe, score_threshold=0.05))
        b = to_detections(objs).boxes
        assert not (np.triu(iou_matrix(b, b), 1) > recipe.thresholds.nms_iou + 0.02).any()


def test_threshold_comes_from_params(harness, recipe, frame_outputs):
    out = frame_outputs[0]
    for thr in (0.3, 0.8, 0.95):
        assert_same_faces(harness.parse_bbox(out, W, H, [thr]), candidates(out, recipe, W, H, thr))
    default = harness.parse_bbox(out, W, H, [])  # no per-class vector: the recipe's threshold
    assert len(default) == len(candidates(out, recipe, W, H, recipe.thresholds.score))
    assert harness.parse_bbox(out, W, H, [1.0]) == []


def test_other_network_size(harness, recipe, torch_runner, classroom_frame):
    """Anchors follow NetworkInfo: a 320x320 input gives other anchors, same reference agreement; the
    frame's region follows it too (1920x1080 letterboxed into 320x320: 320x180)."""
    from toolchain.reference.preprocess import normalize, scale_frame

    p = recipe.preprocess
    canvas, _ = scale_frame(classroom_frame, 320, 320, True, False)
    x = normalize(canvas, p.color, p.mean, p.scale)[None]
    out = split_batch(torch_runner.infer({recipe.input.name: x}))[0]
    ref = candidates(out, recipe, 320, 320, 0.3)
    region = content_region(320, 320, True, False)
    assert region == (0.0, 0.0, 320.0, 180.0)
    rb = ref.boxes.copy()
    rb[:, [0, 2]] = np.clip(rb[:, [0, 2]], region[0], region[2])
    rb[:, [1, 3]] = np.clip(rb[:, [1, 3]], region[1], region[3])
    rb = rb[(rb[:, 2] > rb[:, 0]) & (rb[:, 3] > rb[:, 1])]
    objs = harness.parse_bbox(out, 320, 320, [0.3])
    assert len(rb) == len(objs) and len(rb) > 0
    b = to_detections(objs).boxes
    assert np.abs(b - rb).max() <= 0.5
    assert harness.parse_bbox(out, W, H, [0.3]) is None  # N does not match 640x384's anchors


# ---------------------------------------------------------------- malformed inputs
def _raw(out):
    return [{"name": k, "dtype": v.dtype, "dims": list(v.shape), "buffer": v} for k, v in out.items()]


def _malformed(out):
    lay = _raw(out)
    nan_conf = out["conf"].copy()
    nan_conf[5, 1] = np.nan
    inf_conf = out["conf"].copy()
    inf_conf[77, 0] = np.inf
    bad_loc = out["loc"].copy()
    bad_loc[int(np.argmax(out["conf"][:, 1]))] = np.inf  # a kept row
    return {
        "no layers": [],
        "only loc": lay[:1],
        "loc and landmarks only": [lay[0], lay[2]],
        "loc one row short": [dict(lay[0], dims=[N - 1, 4])] + lay[1:],
        "loc 5 columns": [dict(lay[0], dims=[N // 5 * 4, 5], num_elements=N // 5 * 20)] + lay[1:],
        "conf 3 columns": [lay[0], dict(lay[1], dims=[N * 2 // 3, 3])] + lay[2:],
        "landmarks 8 columns": lay[:2] + [dict(lay[2], dims=[N * 10 // 8, 8])],
        "rank 3 with batch": [dict(lay[0], dims=[1, N, 4])] + lay[1:],
        "rank 1 loc": [dict(lay[0], dims=[N * 4])] + lay[1:],
        "rank 9": [dict(lay[0], num_dims=9)] + lay[1:],
        "rank 0": [dict(lay[0], num_dims=0)] + lay[1:],
        "numElements mismatch": [dict(lay[0], num_elements=N * 4 - 1)] + lay[1:],
        "int32 dtype": [dict(lay[0], dtype=np.int32, buffer=out["loc"].view(np.int32))] + lay[1:],
        "int8 dtype": [lay[0], dict(lay[1], dtype=2)] + lay[2:],
        "unknown dtype 7": [dict(lay[0], dtype=7)] + lay[1:],
        "null buffer": [lay[0], dict(lay[1], buffer=None)] + lay[2:],
        "null landmark buffer": lay[:2] + [dict(lay[2], buffer=None)],
        "nameless loc": [dict(lay[0], name=None)] + lay[1:],
        "duplicate name": lay + [lay[0]],
        "NaN score": [lay[0], dict(lay[1], buffer=nan_conf)] + lay[2:],
        "Inf score": [lay[0], dict(lay[1], buffer=inf_conf)] + lay[2:],
        "Inf box delta": [dict(lay[0], buffer=bad_loc)] + lay[1:],
        "loc marked as input": [dict(lay[0], is_input=1)] + lay[1:],
    }


@pytest.mark.parametrize("case", list(_malformed({"loc": np.zeros((N, 4), np.float32),
                                                  "conf": np.zeros((N, 2), np.float32),
                                                  "landmarks": np.zeros((N, 10), np.float32)})))
def test_malformed_inputs_return_false(harness, frame_outputs, case):
    layers = _malformed(frame_outputs[0])[case]
    assert harness.parse_raw(layers, W, H, [0.5], BBOX_FUNC) is None
    assert harness.parse_raw(layers, W, H, [0.5], MASK_FUNC, mask=True) is None


@pytest.mark.parametrize("net", [(0, 0), (640, 0), (100000, 384), (320, 320)])
def test_bad_network_size_returns_false(harness, frame_outputs, net):
    assert harness.parse_bbox(frame_outputs[0], *net, [0.5]) is None


def test_bad_threshold_and_missing_symbol(harness, frame_outputs):
    assert harness.parse_bbox(frame_outputs[0], W, H, [float("nan")]) is None
    with pytest.raises(FbtoolError, match="no function"):
        harness.parse_bbox(frame_outputs[0], W, H, [0.5], func="NvDsInferParseNope")


def test_mask_parser_needs_landmarks_bbox_does_not(harness, recipe, frame_outputs):
    out = {k: v for k, v in frame_outputs[0].items() if k != "landmarks"}
    assert harness.parse_mask(out, W, H, [0.5]) is None
    assert_same_faces(harness.parse_bbox(out, W, H, [0.5]), candidates(out, recipe, W, H, 0.5))


def test_nan_outside_kept_rows_is_ignored(harness, recipe, frame_outputs):
    out = dict(frame_outputs[0])
    loc = out["loc"].copy()
    dead = int(np.argmin(out["conf"][:, 1]))
    loc[dead] = np.nan  # a box delta nobody reads (score below threshold) cannot fail the frame
    out["loc"] = loc
    assert_same_faces(harness.parse_bbox(out, W, H, [0.5]), candidates(out, recipe, W, H, 0.5))


# ---------------------------------------------------------------- fuzz smoke (CI)
def test_fuzz_smoke(tmp_path):
    clang = shutil.which("clang++-14")
    if clang is None:
        pytest.skip("clang++-14 is not installed (apt-get install clang-14 libclang-rt-14-dev)")
    if not list(Path("/usr/lib/llvm-14/lib/clang").glob("*/lib/linux/libclang_rt.fuzzer-x86_64.a")):
        pytest.skip("libFuzzer runtime missing (apt-get install libclang-rt-14-dev)")
    script = PLUGINS / "fuzz" / "run_fuzz.sh"
    res = subprocess.run([str(script), "20000", str(tmp_path)], capture_output=True, text=True, timeout=900)
    tail = (res.stdout + res.stderr)[-3000:]
    assert res.returncode == 0, tail
    assert "stat::number_of_executed_units: 20000" in res.stderr, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))


def test_surgery_decoded_model_end_to_end(recipe, onnx_path, classroom_frame, headpose_frame, tmp_path):
    """A real decode-in-graph ONNX (surgery, top-K) run by onnxruntime, its metadata as the parameter
    source of build-parser, its outputs parsed: same faces as the reference on the raw heads."""
    import dataclasses

    from click.testing import CliRunner

    from toolchain.cli import cli
    from toolchain.reference.preprocess import preprocess_batch
    from toolchain.runfolder import RunFolder
    from toolchain.runners import OrtRunner
    from toolchain.surgery.stage import surgery

    surgery(recipe, tmp_path, onnx=onnx_path, settings=dataclasses.replace(recipe.surgery, decode=True, top_k=750),
            check=False)
    res = CliRunner().invoke(cli, ["build-parser", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    run = RunFolder(tmp_path)
    assert run.stage("build-parser")["info"]["params_source"].startswith("surgery:")
    x, _ = preprocess_batch([classroom_frame, headpose_frame], recipe)
    raw = split_batch(OrtRunner(onnx_path).infer({recipe.input.name: x}))
    dec = OrtRunner(run.artifact("surgery", "onnx"))
    with ParserHarness({"lib": run.artifact("build-parser", "lib"), "harness": run.artifact("build-parser", "harness")}) as h:
        for r, d in zip(raw, split_batch(dec.infer({recipe.input.name: x}))):
            assert set(d) == {"det_boxes", "det_scores", "det_landmarks"} and d["det_scores"].shape == (750,)
            ref = postprocess(r, recipe)
            objs = h.parse_mask(d, W, H, [recipe.thresholds.score], order=dec.output_names)
            assert_same_faces(objs, ref, box_px=recipe.tolerances.box_px)
            assert min(paired_mask_ious(objs, ref, recipe)) >= recipe.tolerances.mask_iou


def test_build_parser_accepts_a_relative_run_folder(tmp_path, monkeypatch, recipe):
    """`fbtool build-parser -o runs/x` from any working directory (make runs elsewhere)."""
    from toolchain.parser.build import build_parser

    monkeypatch.chdir(tmp_path)
    b = build_parser(recipe, "rel/run")
    assert b.lib.is_file() and b.lib.is_absolute()
    assert (tmp_path / "rel" / "run" / "parser" / b.lib.name).is_file()


def test_harness_opens_parsers_lazily_like_nvinfer(harness, tmp_path):
    """nvinfer dlopens custom-lib-path with RTLD_LAZY (nvdsinfer_context_impl.cpp, DlLibHandle): a
    library with an unresolved function it never calls loads. The harness must load the same set."""
    import ctypes

    src = tmp_path / "lazy.c"
    src.write_text("void not_defined_anywhere(void);\nvoid never_called(void) { not_defined_anywhere(); }\n")
    lib = tmp_path / "liblazy.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    err = ctypes.create_string_buffer(512)
    handle = harness._h.fbt_open(str(lib).encode(), err, len(err))
    assert handle, err.value.decode()
