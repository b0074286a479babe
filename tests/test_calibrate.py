"""fbtool calibrate: calibration set, statistics, TensorRT cache, INT8 Q/DQ, FP16, accuracy gate.

One module-scoped `fbtool calibrate --method both` run (real weights, real frames) is shared by the
behaviour tests; cache format and graph passes are pinned with tiny inputs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct

import numpy as np
import pytest

from toolchain.errors import FbtoolError

CALIB_FRAMES = 32


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, onnx_path):
    """A fresh run folder holding the session export, calibrated once through the CLI."""
    from click.testing import CliRunner

    from toolchain.cli import cli
    from toolchain.runfolder import RunFolder

    out = tmp_path_factory.mktemp("calib_run")
    shutil.copy(onnx_path, out / "model.onnx")
    RunFolder(out).record("export", {"onnx": out / "model.onnx"})
    res = CliRunner().invoke(cli, ["calibrate", "-o", str(out), "--method", "both", "--frames", str(CALIB_FRAMES)])
    assert res.exit_code == 0, res.output
    stage = json.loads((out / "manifest.json").read_text())["stages"]["calibrate"]
    return out, stage, res.output


def _one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# ---- calibration set -------------------------------------------------------------------------------

def test_calibration_set_is_nvinfer_preprocessing_exactly(calibrated, recipe):
    from toolchain.calibset import load_calibration_set
    from toolchain.media import iter_frames
    from toolchain.reference.preprocess import preprocess

    out, _, _ = calibrated
    cs = load_calibration_set(out / "calib", recipe)
    assert len(cs) == CALIB_FRAMES
    man = cs.manifest
    assert man["preprocess_hash"] == recipe.preprocess_hash()
    assert {f["source"] for f in man["frames"]} == set(recipe.calibration_media)
    for k in (0, len(cs) - 1):
        f = man["frames"][k]
        frame = next(img for i, img in iter_frames(f["source"]) if i == f["index"])
        expected, _ = preprocess(frame, recipe)
        got = cs.tensors(k, k + 1)[0]
        assert got.dtype == np.float32 and got.shape == (3, recipe.input.height, recipe.input.width)
        np.testing.assert_array_equal(got, expected)
    batches = list(cs.batches(8))
    assert [b.shape[0] for b in batches] == [8] * (CALIB_FRAMES // 8)
    assert sum(1 for _ in cs) == len(batches)  # re-iterable: the statistics pass iterates twice


def test_calibration_set_from_image_and_mp4(tmp_path, recipe, classroom_frame):
    import cv2

    from toolchain.calibset import build_calibration_set, load_calibration_set

    png = tmp_path / "still.png"
    cv2.imwrite(str(png), classroom_frame)
    mp4 = "one-by-one-person-detection.mp4"  # 1394 frames: 3 wanted -> spread 464 frames apart
    build_calibration_set(recipe, [str(png), mp4], 4, tmp_path / "calib", validation=["people-detection.gif"])
    cs = load_calibration_set(tmp_path / "calib", recipe)
    assert [(f["source"], f["index"]) for f in cs.manifest["frames"]] == [
        (str(png), 0), (mp4, 0), (mp4, 464), (mp4, 928)]
    assert cs.array().shape == (4, 3, recipe.input.height, recipe.input.width)


def test_preprocess_hash_mismatch_is_refused(calibrated, recipe):
    from toolchain.calibset import load_calibration_set

    other = dataclasses.replace(recipe, preprocess=dataclasses.replace(recipe.preprocess, mean=(0.0, 0.0, 0.0)))
    with pytest.raises(FbtoolError) as e:
        load_calibration_set(calibrated[0] / "calib", other)
    assert "preprocessing hash" in _one_line_error(e)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 10])
def test_empty_or_unreadable_source_stops(tmp_path, recipe, content):
    from toolchain.calibset import build_calibration_set

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(content)
    with pytest.raises(FbtoolError) as e:
        build_calibration_set(recipe, [str(bad)], 4, tmp_path / "calib", recipe.validation_media)
    assert str(bad) in _one_line_error(e)
    assert not (tmp_path / "calib" / "calib_set.npy").exists()


def test_missing_or_no_source_stops(tmp_path, recipe):
    from toolchain.calibset import spread_frames

    with pytest.raises(FbtoolError):
        spread_frames([str(tmp_path / "nope.gif")], 4)
    with pytest.raises(FbtoolError) as e:
        spread_frames([], 4)
    assert "no calibration source" in _one_line_error(e)


def test_cli_reports_unreadable_source_in_one_line(tmp_path, onnx_path):
    from click.testing import CliRunner

    from toolchain.cli import cli
    from toolchain.runfolder import RunFolder

    shutil.copy(onnx_path, tmp_path / "model.onnx")
    RunFolder(tmp_path).record("export", {"onnx": tmp_path / "model.onnx"})
    (tmp_path / "empty.gif").write_bytes(b"")
    res = CliRunner().invoke(cli, ["calibrate", "-o", str(tmp_path), "--source", str(tmp_path / "empty.gif")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "empty" in lines[0]


def test_calibration_and_validation_clips_are_disjoint(tmp_path, recipe):
    from toolchain.calibset import build_calibration_set, check_disjoint
    from toolchain.media import resolve_media

    assert not set(recipe.calibration_media) & set(recipe.validation_media)
    check_disjoint(recipe.calibration_media, recipe.validation_media)
    # A user-given list is checked by content: a renamed copy of a validation clip is refused.
    copy = tmp_path / "renamed.gif"
    shutil.copy(resolve_media(recipe.validation_media[0]), copy)
    with pytest.raises(FbtoolError) as e:
        build_calibration_set(recipe, [str(copy)], 4, tmp_path / "calib", recipe.validation_media)
    assert "also a validation clip" in _one_line_error(e)


def test_gate_refuses_calibration_frames(calibrated, recipe):
    from toolchain.calibrate.gate import check_held_out
    from toolchain.calibset import load_calibration_set, spread_frames

    cs = load_calibration_set(calibrated[0] / "calib", recipe)
    check_held_out(spread_frames(recipe.validation_media[:1], 2), cs.source_hashes)
    with pytest.raises(FbtoolError) as e:
        check_held_out(spread_frames(recipe.calibration_media[:1], 2), cs.source_hashes)
    assert "calibration source" in _one_line_error(e)


# ---- legacy TensorRT cache -------------------------------------------------------------------------

def test_cache_header_and_scale_encoding_are_tensorrts():
    from toolchain.trt.calib_cache import decode_scale, encode_scale, header, trt_version_number

    # NV_TENSORRT_VERSION: major*10000+minor*100+patch from TensorRT 10, major*1000+... before.
    assert header("10.3") == "TRT-100300-EntropyCalibration2"
    assert header("10.16.0", "MinMaxCalibration") == "TRT-101600-MinMaxCalibration"
    assert header("8.6.1") == "TRT-8601-EntropyCalibration2"
    assert trt_version_number("7.1.3") == 7103
    # Big-endian IEEE-754 float32 hex, as in public TensorRT caches ("data: 3c008912" ~ 1/127.5).
    assert encode_scale(1.0) == "3f800000" and encode_scale(2.0) == "40000000"
    assert encode_scale(1 / 127.5) == "3c008081"
    assert decode_scale("3c008912") == struct.unpack(">f", bytes.fromhex("3c008912"))[0]
    with pytest.raises(FbtoolError):
        trt_version_number("11.0")  # no INT8 calibrators in TensorRT 11
    with pytest.raises(FbtoolError):
        trt_version_number("ten")


def test_cache_round_trips_exactly(calibrated, recipe, onnx_path):
    import onnx

    from toolchain.calibrate.stats import ActivationStats
    from toolchain.trt.calib_cache import read_cache

    out, stage, _ = calibrated
    stats = ActivationStats.load(out / "calib" / "stats.npz")
    for method, key, algo in (("entropy", "calib_cache", "EntropyCalibration2"),
                              ("max", "calib_cache_max", "MinMaxCalibration")):
        path = out / stage["artifacts"][key]["path"]
        text = path.read_text()
        assert text.splitlines()[0] == f"TRT-100300-{algo}"
        cache = read_cache(path)
        want = stats.scales(method)
        assert list(cache.scales) == list(want)
        for name, s in want.items():  # float32 bit-exact
            assert np.float32(cache.scales[name]).tobytes() == np.float32(s).tobytes()
        assert cache.matches("10.3") and not cache.matches("10.16")
    # scale = amax / 127: the input's amax is 255 - 104 (blue channel mean).
    assert read_cache(out / stage["artifacts"]["calib_cache_max"]["path"]).scales["input"] == \
        float(np.float32(151.0 / 127.0))
    # Names are the ONNX tensor names TensorRT's parser gives: graph input + node outputs.
    model = onnx.load(str(onnx_path))
    produced = {o for n in model.graph.node for o in n.output} | {recipe.input.name}
    names = list(read_cache(out / stage["artifacts"]["calib_cache"]["path"]).scales)
    assert names[0] == recipe.input.name and set(names) <= produced
    assert {"loc", "conf", "landmarks"} <= set(names)
    assert len(names) == len({n.output[0] for n in model.graph.node if n.op_type != "Constant"}) + 1


def test_cache_reader_rejects_garbage(tmp_path):
    from toolchain.trt.calib_cache import read_cache

    p = tmp_path / "c.cache"
    p.write_text("TRT-100300-EntropyCalibration2\ninput: 3f80\n")
    with pytest.raises(FbtoolError):
        read_cache(p)
    p.write_text("hello\n")
    with pytest.raises(FbtoolError):
        read_cache(p)


# ---- statistics ------------------------------------------------------------------------------------

def test_entropy_threshold_clips_outliers_but_not_uniform():
    from toolchain.calibrate.stats import NUM_BINS, entropy_amax

    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.normal(0, 1, 200_000), [40.0]]))  # one far outlier
    h, _ = np.histogram(x, bins=NUM_BINS, range=(0, x.max()))
    t = entropy_amax(h, float(x.max()))
    assert 2.0 < t < 10.0
    u = np.full(NUM_BINS, 100)
    assert entropy_amax(u, 8.0) > 7.9


def _tiny_relu_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_calibration_leaving_outputs_all_zero_stops(tmp_path):
    from toolchain.calibrate.stats import collect

    _tiny_relu_model(tmp_path / "m.onnx")
    with pytest.raises(FbtoolError) as e:
        collect(tmp_path / "m.onnx", [-np.ones((1, 1, 4, 4), np.float32)])  # Relu of negatives: all zero
    assert "all-zero" in _one_line_error(e)
    stats = collect(tmp_path / "m.onnx", [np.linspace(-1, 3, 16, dtype=np.float32).reshape(1, 1, 4, 4)])
    assert stats.names == ["x", "c", "y"] and stats.amax["y"] == pytest.approx(3.0)


def test_gate_stops_on_all_zero_candidate(tmp_path, recipe, onnx_path, classroom_frame):
    import onnx
    from onnx import helper, numpy_helper

    from toolchain.calibrate.gate import accuracy_gate

    m = onnx.load(str(onnx_path))
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    for out in m.graph.output:  # rename the producer's output, multiply it by 0 into the old name
        prod = next(n for n in m.graph.node if out.name in n.output)
        prod.output[list(prod.output).index(out.name)] = out.name + "_raw"
        m.graph.node.append(helper.make_node("Mul", [out.name + "_raw", "zero"], [out.name]))
    bad = tmp_path / "zeroed.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(FbtoolError) as e:
        accuracy_gate(recipe, bad, [classroom_frame], "int8-entropy")
    assert "all-zero" in _one_line_error(e)


# ---- products --------------------------------------------------------------------------------------

def test_qdq_models_use_the_cache_scales_and_keep_metadata(calibrated, recipe, onnx_path):
    import onnx
    from onnx import numpy_helper

    from toolchain.onnx_meta import get_metadata
    from toolchain.trt.calib_cache import read_cache

    out, stage, _ = calibrated
    src_meta = get_metadata(onnx_path)
    for key, cache_key, method in (("int8_qdq", "calib_cache", "entropy"), ("int8_qdq_max", "calib_cache_max", "max")):
        model = onnx.load(str(out / stage["artifacts"][key]["path"]))
        scales = read_cache(out / stage["artifacts"][cache_key]["path"]).scales
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        acts = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in scales]
        assert len(acts) > 20
        for n in acts:
            assert float(inits[n.input[1]]) == np.float32(scales[n.input[0]])
        meta = get_metadata(model)
        assert meta["precision"] == "int8-qdq" and meta["calibration_method"] == method
        for k in ("recipe_hash", "preprocess_hash", "anchors", "output_layout"):
            assert meta[k] == src_meta[k]
        # The softmax stays in fp32 and is recorded as such.
        dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
        assert not set(softmax.input) & dq and softmax.name in meta["int8_high_precision_nodes"]
        assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)


def test_fp16_model_is_fp16_inside_with_fp32_io(calibrated, onnx_path):
    import onnx

    from toolchain.onnx_meta import get_metadata

    out, stage, _ = calibrated
    model = onnx.load(str(out / stage["artifacts"]["fp16"]["path"]))
    f32 = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == f32 for v in list(model.graph.input) + list(model.graph.output))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert all(inits[c.input[1]] == onnx.TensorProto.FLOAT16 for c in convs)
    meta = get_metadata(model)
    assert meta["precision"] == "fp16" and meta["recipe_hash"] == get_metadata(onnx_path)["recipe_hash"]
    info = stage["info"]["products"]["fp16"]["autocast"]
    assert "node_softmax" in [k["node"] for k in info["fp32_nodes"]]
    assert info["overflow_risks"] == []  # this model's activations stay far below 65504


def test_fp16_overflow_check_flags_large_activations():
    from toolchain.calibrate.fp16 import overflow_risks
    from toolchain.calibrate.stats import ActivationStats

    s = ActivationStats(["x", "a", "b"], {"x": 1.0, "a": 40000.0, "b": 100.0}, producers={"x": "", "a": "n_a", "b": "n_b"})
    assert [r["node"] for r in overflow_risks(s)] == ["n_a"]


def test_post_processing_tail_stays_high_precision():
    from onnx import TensorProto, helper

    from toolchain.calibrate.qdq import high_precision_nodes, post_processing_tail

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["d"], name="head"),
             helper.make_node("Mul", ["d", "k"], ["m"], name="scale"),
             helper.make_node("Exp", ["m"], ["e"], name="exp"),
             helper.make_node("Add", ["e", "anchors"], ["y"], name="decode")]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g)
    assert post_processing_tail(model) == ["scale", "exp", "decode"]
    assert set(high_precision_nodes(model)) == {"scale", "exp", "decode"}


def test_gate_fails_against_tighter_recipe_limits(calibrated, recipe):
    from toolchain.calibrate.gate import accuracy_gate
    from toolchain.calibset import spread_frames

    out, stage, _ = calibrated
    strict = dataclasses.replace(recipe, tolerances=dataclasses.replace(recipe.tolerances, int8_mean_iou=0.999))
    g = accuracy_gate(strict, out / stage["artifacts"]["int8_qdq"]["path"],
                      spread_frames(recipe.validation_media[:1], 4), "int8-entropy")
    assert not g["passed"] and g["failures"][0].startswith("mean_iou")
    assert g["limits"] == {"f1": recipe.tolerances.int8_f1, "mean_iou": 0.999}


def test_gate_figures_meet_the_recipe_tolerances(calibrated, recipe):
    out, stage, output = calibrated
    tol = recipe.tolerances
    products = stage["info"]["products"]
    assert set(products) == {"int8_qdq", "int8_qdq_max", "fp16"}
    assert stage["info"]["gate_frames"] == 40 and stage["info"]["reference_faces"] > 20
    for key, p in products.items():
        g = p["gate"]
        assert g["passed"], (key, g["failures"])
        if key.startswith("int8"):
            assert g["f1"] >= tol.int8_f1 and g["mean_iou"] >= tol.int8_mean_iou
        else:
            assert g["f1"] >= tol.fp16_f1
        assert set(g["tensors"]) == {"loc", "conf", "landmarks"}
        assert all(t["finite"] for t in g["tensors"].values())
        assert (out / stage["artifacts"][key]["path"]).is_file()
        assert f"{key} " in output
    assert "calibrate: done" in output


@pytest.mark.parametrize("key,candidate,field", [("fp16", "fp16", "mean_iou"), ("int8_qdq", "int8-qdq", "int8_mean_iou")])
def test_calibrate_gate_and_validate_give_one_verdict(calibrated, recipe, tmp_path, key, candidate, field):
    """One product, one recipe: `fbtool calibrate`'s gate and `fbtool validate` agree, at the recipe's
    tolerances (both pass) and with the mean-IoU limit out of reach (both fail). FP16 used to pass
    the gate on F1 alone while validate failed it on mean IoU."""
    from toolchain.calibrate.gate import accuracy_gate
    from toolchain.calibset import spread_frames
    from toolchain.runfolder import RunFolder
    from toolchain.validate import validate

    out, stage, _ = calibrated
    run = tmp_path / "run"
    run.mkdir()
    product = run / stage["artifacts"][key]["path"]
    shutil.copy(out / stage["artifacts"][key]["path"], product)
    RunFolder(run).record("calibrate", {key: product})
    strict = dataclasses.replace(recipe, tolerances=dataclasses.replace(recipe.tolerances, **{field: 0.9999}))
    frames = spread_frames(recipe.validation_media[:2], 8)
    for r, want in ((recipe, True), (strict, False)):
        gate = accuracy_gate(r, product, frames, "int8-entropy" if key.startswith("int8") else "fp16")
        report = validate(r, run, only={candidate}, per_clip=2)
        verdict = next(c for c in report["candidates"] if c["name"] == candidate)
        assert verdict["status"] in ("pass", "fail"), verdict
        assert gate["passed"] == (verdict["status"] == "pass") == want, (gate["failures"], verdict["breaches"])
