"""Graph surgery: each pass on a tiny inline graph (onnxruntime before vs after), then the whole
pass list on the real default model and real frames, judged by toolchain.reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from toolchain.compare.policy import DECODE_TOL_PX
from toolchain.errors import FbtoolError
from toolchain.surgery import PassContext, apply, pass_names, run_passes
from toolchain.surgery._graph import to_graph, to_model
from toolchain.surgery.parity import reference_decoded

OPSET = 18


def make_model(nodes, inputs, outputs, inits=(), opset=OPSET):
    g = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def run(model, feed):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compare the graphs as written
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def apply_passes(model, recipe, names, **settings):
    ctx = PassContext(recipe, dataclasses.replace(recipe.surgery, **settings))
    out = to_model(apply(to_graph(model), names, ctx))
    onnx.checker.check_model(out, full_check=True)
    return out


def ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


def vi(name, shape, ty=TP.FLOAT):
    return helper.make_tensor_value_info(name, ty, shape)


# ---------------------------------------------------------------- sanitize

def test_sanitize_folds_constants_and_drops_identity_dropout_dead_nodes(recipe):
    rng = np.random.default_rng(0)
    c1, c2 = rng.normal(size=(1, 4)).astype(np.float32), rng.normal(size=(1, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Identity", ["x"], ["x_id"]),
        helper.make_node("Mul", ["c1", "c2"], ["c12"]),  # constant sub-graph: folded by graphsurgeon
        helper.make_node("Add", ["c12", "c1"], ["bias"]),
        helper.make_node("Add", ["x_id", "bias"], ["a"]),
        helper.make_node("Dropout", ["a"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Identity", ["r"], ["y"]),  # feeds the graph output: the name must survive
        helper.make_node("Neg", ["x"], ["dead"]),  # nobody reads it
    ]
    m = make_model(nodes, [vi("x", ["batch", 4])], [vi("y", ["batch", 4])],
                   [numpy_helper.from_array(c1, "c1"), numpy_helper.from_array(c2, "c2")])
    out = apply_passes(m, recipe, ["sanitize"])
    assert ops(out) == ["Add", "Relu"]
    assert [o.name for o in out.graph.output] == ["y"]
    for b in (1, 3):
        feed = {"x": rng.normal(size=(b, 4)).astype(np.float32)}
        np.testing.assert_allclose(run(out, feed)["y"], run(m, feed)["y"], rtol=0, atol=1e-6)
    # shape inference ran: the intermediate tensor carries its type and symbolic batch
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in out.graph.value_info}
    assert list(shapes.values()) == [["batch", 4]]


def test_sanitize_keeps_a_dropout_that_may_train(recipe):
    m = make_model([helper.make_node("Dropout", ["x", "", "train"], ["y"])],
                   [vi("x", ["batch", 4]), vi("train", [], TP.BOOL)], [vi("y", ["batch", 4])])
    assert ops(apply_passes(m, recipe, ["sanitize"])) == ["Dropout"]


def test_sanitize_brings_the_opset_into_tensorrts_range(recipe):
    m = make_model([helper.make_node("Add", ["x", "x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
                   [vi("x", ["batch", 3])], [vi("y", ["batch", 3])], opset=21)
    out = apply_passes(m, recipe, ["sanitize"])
    assert out.opset_import[0].version == 20
    feed = {"x": np.array([[-1, 0.5, 2]], np.float32)}
    np.testing.assert_array_equal(run(out, feed)["y"], run(m, feed)["y"])


# ---------------------------------------------------------------- trt_hygiene

def _torchscript_style_view(n_out: int = 12):
    """x.permute(0,2,3,1).view(x.size(0), -1, 4) as the TorchScript exporter writes it."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Shape", ["t"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Concat", ["b1", "n", "four"], ["shape"], axis=0),
        helper.make_node("Reshape", ["t", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([n_out], np.int64), "n"),
             numpy_helper.from_array(np.array([4], np.int64), "four")]
    return make_model(nodes, [vi("x", ["batch", 8, 2, 3])], [vi("y", ["batch", n_out, 4])], inits)


def test_hygiene_replaces_shape_chains_by_a_constant_reshape_keeping_batch_dynamic(recipe):
    m = _torchscript_style_view()
    out = apply_passes(m, recipe, ["trt_hygiene"])
    assert ops(out) == ["Transpose", "Reshape"]
    target = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}[out.graph.node[1].input[1]]
    assert target.tolist() == [-1, 12, 4]
    rng = np.random.default_rng(1)
    for b in (1, 3):  # the batch axis is still free
        feed = {"x": rng.normal(size=(b, 8, 2, 3)).astype(np.float32)}
        np.testing.assert_array_equal(run(out, feed)["y"], run(m, feed)["y"])


def test_hygiene_narrows_index_int64_to_int32(recipe):
    nodes = [
        helper.make_node("Cast", ["fidx"], ["idx64"], to=TP.INT64),  # a computed index
        helper.make_node("Gather", ["x", "idx64"], ["g1"], axis=1),
        helper.make_node("Gather", ["x", "cidx"], ["g2"], axis=1),  # an INT64 constant index
        helper.make_node("Add", ["g1", "g2"], ["y"]),
        helper.make_node("ArgMax", ["x"], ["best"], axis=1, keepdims=0),  # INT64 graph output
    ]
    inits = [numpy_helper.from_array(np.array([0.0, 2.0, 5.0], np.float32), "fidx"),
             numpy_helper.from_array(np.array([1, 1, 4], np.int64), "cidx")]
    m = make_model(nodes, [vi("x", ["batch", 6])], [vi("y", ["batch", 3]), vi("best", ["batch"], TP.INT64)], inits)
    out = apply_passes(m, recipe, ["trt_hygiene"])
    cast = next(n for n in out.graph.node if n.op_type == "Cast" and n.input[0] == "fidx")
    assert helper.get_attribute_value(cast.attribute[0]) == TP.INT32
    inits_out = {i.name: i.data_type for i in out.graph.initializer}
    const_idx = [n.input[1] for n in out.graph.node if n.op_type == "Gather" and n.input[1] in inits_out]
    assert [inits_out[i] for i in const_idx] == [TP.INT32]
    outs = {o.name: o.type.tensor_type.elem_type for o in out.graph.output}
    assert outs == {"y": TP.FLOAT, "best": TP.INT32}
    feed = {"x": np.random.default_rng(2).normal(size=(2, 6)).astype(np.float32)}
    before, after = run(m, feed), run(out, feed)
    np.testing.assert_array_equal(after["y"], before["y"])
    np.testing.assert_array_equal(after["best"], before["best"])


def test_hygiene_refuses_a_fixed_batch(recipe):
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [1, 4])], [vi("y", [1, 4])])
    with pytest.raises(FbtoolError, match="fixed batch"):
        apply_passes(m, recipe, ["trt_hygiene"])


# ---------------------------------------------------------------- decode (tiny detector)

@pytest.fixture(scope="module")
def tiny_recipe(recipe):
    """The default recipe at a 64x32 input: 84 anchors, small enough for inline graphs."""
    return dataclasses.replace(recipe, input=dataclasses.replace(recipe.input, width=64, height=32))


def _tiny_detector(recipe, names=("loc", "conf", "landmarks"), image="input", extra_output=False):
    """image [B,3,32,64] -> pooled features -> random linear heads: loc, softmax conf, landmarks."""
    from toolchain.reference.anchors import anchors_for

    n = anchors_for(recipe).shape[0]
    rng = np.random.default_rng(3)
    w = (rng.normal(size=(96, n * 16)) * 0.02).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", [image], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Reshape", ["p", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "rows"], ["hr"]),
        helper.make_node("Split", ["hr", "sizes"], ["l", "logits", "m"], axis=2),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("Identity", ["l"], [names[0]]),
        helper.make_node("Identity", ["probs"], [names[1]]),
        helper.make_node("Identity", ["m"], [names[2]]),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 96], np.int64), "flat"),
             numpy_helper.from_array(np.array([-1, n, 16], np.int64), "rows"),
             numpy_helper.from_array(np.array([4, 2, 10], np.int64), "sizes")]
    outputs = [vi(names[0], ["B", n, 4]), vi(names[1], ["B", n, 2]), vi(names[2], ["B", n, 10])]
    if extra_output:
        outputs.append(vi("h", ["B", n * 16]))
    return make_model(nodes, [vi(image, ["B", 3, 32, 64])], outputs, inits), n


def _images(b, seed=4):
    return {"input": (np.random.default_rng(seed).normal(size=(b, 3, 32, 64)) * 60).astype(np.float32)}


@pytest.mark.parametrize("top_k,prefilter", [(0, 0.0), (20, 0.0), (20, 0.85), (0, 0.5)])
def test_decode_in_graph_matches_the_reference(tiny_recipe, top_k, prefilter):
    m, n = _tiny_detector(tiny_recipe)
    out = apply_passes(m, tiny_recipe, ["decode"], decode=True, top_k=top_k, score_prefilter=prefilter)
    k = top_k or n
    names = [o.name for o in out.graph.output]
    assert names == ["det_boxes", "det_scores", "det_landmarks"]
    for b in (1, 3):
        feed = _images(b)
        raw, dec = run(m, feed), run(out, feed)
        assert dec["det_boxes"].shape == (b, k, 4) and dec["det_scores"].shape == (b, k)
        assert dec["det_landmarks"].shape == (b, k, 10)
        for i in range(b):
            ref = reference_decoded({kk: v[i] for kk, v in raw.items()}, tiny_recipe, 64, 32, top_k, prefilter)
            np.testing.assert_array_equal(dec["det_scores"][i], ref["det_scores"])
            assert np.abs(dec["det_boxes"][i] - ref["det_boxes"]).max() <= DECODE_TOL_PX
            assert np.abs(dec["det_landmarks"][i] - ref["det_landmarks"]).max() <= DECODE_TOL_PX
        if prefilter:
            assert (dec["det_scores"] == 0).any() and not ((dec["det_scores"] > 0) & (dec["det_scores"] <= prefilter)).any()


def test_decode_refuses_mismatched_anchors_and_decoded_input(tiny_recipe, recipe):
    m, _ = _tiny_detector(tiny_recipe)
    wrong = dataclasses.replace(tiny_recipe, anchors=dataclasses.replace(tiny_recipe.anchors, steps=(8, 16, 64)))
    with pytest.raises(FbtoolError, match="anchors"):
        apply_passes(m, wrong, ["decode"], decode=True)
    once = apply_passes(m, tiny_recipe, ["decode"], decode=True)
    with pytest.raises(FbtoolError, match="already decoded"):
        apply_passes(once, tiny_recipe, ["decode"], decode=True)


# ---------------------------------------------------------------- io_names

def test_io_names_renames_orders_and_sets_the_batch_axis(tiny_recipe):
    m, n = _tiny_detector(tiny_recipe, names=("o_box", "o_cls", "o_lm"), image="images", extra_output=True)
    # an internal tensor already called like a target output name must not collide
    for node in m.graph.node:
        node.output[:] = ["loc" if o == "p" else o for o in node.output]
        node.input[:] = ["loc" if i == "p" else i for i in node.input]
    out = apply_passes(m, tiny_recipe, ["io_names"])
    assert [i.name for i in out.graph.input] == ["input"]
    assert [o.name for o in out.graph.output] == ["loc", "conf", "landmarks"]  # the extra output is gone
    for v in list(out.graph.input) + list(out.graph.output):
        assert v.type.tensor_type.shape.dim[0].dim_param == "batch"
    feed = {"images": _images(2)["input"]}
    before, after = run(m, feed), run(out, {"input": feed["images"]})
    for old, new in (("o_box", "loc"), ("o_cls", "conf"), ("o_lm", "landmarks")):
        np.testing.assert_array_equal(after[new], before[old])


# ---------------------------------------------------------------- registry / metadata

def test_pass_names_and_unknown_pass(recipe):
    s = recipe.surgery
    assert pass_names(s) == ["sanitize", "trt_hygiene", "io_names"]
    assert pass_names(dataclasses.replace(s, decode=True)) == ["sanitize", "trt_hygiene", "decode", "io_names"]
    with pytest.raises(FbtoolError, match="unknown pass 'fold'"):
        run_passes(_torchscript_style_view(), recipe, ["sanitize", "fold"])


def test_recipe_surgery_section_is_validated(recipe):
    from toolchain.recipe import recipe_from_dict

    d = recipe.to_dict()
    d["surgery"] = {"top_k": -1}
    with pytest.raises(FbtoolError, match="surgery.top_k"):
        recipe_from_dict(d)
    d["surgery"] = {"decode": "yes"}
    with pytest.raises(FbtoolError, match="surgery.decode"):
        recipe_from_dict(d)


# ---------------------------------------------------------------- the real default model

def test_default_model_raw_layout_is_unchanged_and_keeps_metadata(recipe, onnx_path):
    from toolchain.onnx_meta import get_metadata

    src = onnx.load(str(onnx_path))
    out, report = run_passes(src, recipe)
    assert report.nodes_before == len(src.graph.node) == 126
    assert [o.name for o in out.graph.output] == ["loc", "conf", "landmarks"]
    meta = get_metadata(out)
    assert meta["output_layout"] == "raw" and meta["recipe_hash"] == recipe.hash
    assert meta["surgery"]["passes"] == ["sanitize", "trt_hygiene", "io_names"]
    feed = {"input": _frames_tensor(recipe, 2)}
    a, b = run(src, feed), run(out, feed)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def _frames_tensor(recipe, b):
    from toolchain.frames import parity_frames
    from toolchain.reference.preprocess import preprocess_batch

    return preprocess_batch(parity_frames(recipe, b), recipe)[0]


def test_decoded_default_model_matches_reference_on_real_frames(recipe, onnx_path, classroom_frame,
                                                                 headpose_frame, tmp_path):
    """The whole pass list with decode + top-K on the real model: boxes within 1e-3 px of the reference."""
    from toolchain.onnx_meta import get_metadata
    from toolchain.reference.detections import postprocess, split_batch
    from toolchain.reference.preprocess import preprocess_batch
    from toolchain.surgery.stage import surgery

    settings = dataclasses.replace(recipe.surgery, decode=True, top_k=750)
    info = surgery(recipe, tmp_path, onnx=onnx_path, settings=settings)
    path = tmp_path / "model.surgery.onnx"
    assert info["output_layout"] == "decoded" and info["nodes_before"] == 126
    assert info["parity"]["max_abs"]["det_boxes"] <= DECODE_TOL_PX
    meta = get_metadata(path)
    assert meta["output_layout"] == "decoded"
    assert meta["outputs"]["boxes"] == "det_boxes" and meta["outputs"]["k"] == 750
    # independent check on two real frames, batch 2
    x, _ = preprocess_batch([classroom_frame, headpose_frame], recipe)
    src, dec = run(onnx.load(str(onnx_path)), {"input": x}), run(onnx.load(str(path)), {"input": x})
    w, h = recipe.input.width, recipe.input.height
    faces = 0
    for raw_i, dec_i in zip(split_batch(src), split_batch(dec)):
        ref = reference_decoded(raw_i, recipe, w, h, top_k=750)
        assert np.abs(dec_i["det_boxes"] - ref["det_boxes"]).max() <= DECODE_TOL_PX
        assert np.abs(dec_i["det_landmarks"] - ref["det_landmarks"]).max() <= DECODE_TOL_PX
        np.testing.assert_array_equal(dec_i["det_scores"], ref["det_scores"])
        for thr in (None, 0.02):  # the recipe's threshold, and the evaluation one (40-60 candidates a frame)
            want, got = postprocess(raw_i, recipe, score_threshold=thr), postprocess(dec_i, recipe, score_threshold=thr)
            assert len(got) == len(want)
            if len(want):
                assert np.abs(got.boxes - want.boxes).max() <= DECODE_TOL_PX
                assert np.abs(got.landmarks - want.landmarks).max() <= DECODE_TOL_PX
                np.testing.assert_array_equal(got.scores, want.scores)
            faces += len(want) if thr is None else 0
    assert faces >= 5  # 4 faces in classroom, 2 in head-pose: the comparison is not vacuous
    # manifest: passes, node counts and parity are recorded
    from toolchain.runfolder import RunFolder

    entry = RunFolder(tmp_path).stage("surgery")
    assert entry["info"]["passes"] == ["sanitize", "trt_hygiene", "decode", "io_names"]
    assert entry["info"]["nodes_after"] == info["nodes_after"] > 126
    assert entry["info"]["parity"]["faces"]["match"] is True


def test_hygiene_cleans_the_torchscript_export(recipe, tmp_path):
    """TorchScript writes Shape/Gather/Unsqueeze chains (200 nodes); the passes leave the dynamo-sized graph."""
    from toolchain.export import export

    export(recipe, tmp_path, exporter="torchscript", name="ts.onnx", check=False)
    src = onnx.load(str(tmp_path / "ts.onnx"))
    assert {"Shape", "Gather", "Unsqueeze"} <= set(ops(src))
    out, report = run_passes(src, recipe)
    assert not {"Shape", "Gather", "Unsqueeze", "Constant"} & set(ops(out))
    assert report.nodes_before == 200 and report.nodes_after == 126
    for b in (1, 3):
        feed = {"input": _frames_tensor(recipe, b)}
        a, c = run(src, feed), run(out, feed)
        for k in a:
            np.testing.assert_allclose(c[k], a[k], rtol=0, atol=1e-5)


def test_cli_surgery_and_failure_leaves_no_file(recipe, onnx_path, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli

    res = CliRunner().invoke(cli, ["surgery", "-o", str(tmp_path), "--onnx", str(onnx_path), "--no-check"])
    assert res.exit_code == 0, res.output
    assert "surgery: done" in res.output and "raw layout, nodes 126 -> 126, lint clean" in res.output
    res = CliRunner().invoke(cli, ["surgery", "-o", str(tmp_path), "--onnx", str(onnx_path), "--decode",
                                   "--top-k", "5000", "--name", "big.onnx", "--no-check"])
    assert res.exit_code == 2
    assert "TopK" in res.output and "3840" in res.output
    assert not (tmp_path / "big.onnx").exists()
