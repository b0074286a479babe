"""The FaceMesh SGIE config (toolchain/deepstream/secondary.py) read by NVIDIA's own Gst-nvinfer code
(gst_nvinfer_parse_config_file on a real element, compiled unmodified by plugins/conformance), and its
[secondary-gie0] group by deepstream-app's own parser.

Skipped, with the reason, where neither ../shared/third_party nor $DEEPSTREAM_ROOT/sources is there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.deepstream import secondary
from toolchain.nvinfer import conformance
from toolchain.recipe import load_recipe

pytestmark = pytest.mark.skipif(conformance.missing_reason() is not None,
                                reason=f"NVIDIA's DeepStream code cannot be built here: {conformance.missing_reason()}")

VERSIONS = ("7.1", "8.0", "9.0", "9.1")


@pytest.fixture(scope="module")
def recipes():
    return load_recipe("retinaface_mnet025_facemesh"), load_recipe("facemesh")


@pytest.fixture(scope="module")
def emitted(recipes, tmp_path_factory):
    det, fm = recipes
    d = tmp_path_factory.mktemp("fmrun")
    onnx = d / "facemesh.onnx"
    onnx.write_bytes(b"stand-in: only its path matters to the config parser")
    out = []
    for ds in VERSIONS:
        for prec in secondary.SGIE_PRECISIONS:
            info = secondary.emit_secondary(det, fm, onnx, tmp_path_factory.mktemp(f"sgie{ds}-{prec}"), prec, ds)
            out.append((ds, prec, Path(info["sgie_config"]), info))
    return out


def test_sgie_config_is_read_by_nvidias_parser_as_meant(emitted, recipes):
    _, fm = recipes
    assert len(emitted) == 8
    for ds, prec, path, info in emitted:
        got, messages = conformance.parse_nvinfer_config(path)
        where = f"DeepStream {ds} {prec}: {messages}"
        assert got["parsed"] is True and conformance.unknown_keys(messages) == [], where
        assert "start" not in got, where
        assert got["unique_id"] == secondary.SGIE_ID and got["uniqueID"] == secondary.SGIE_ID, where
        assert got["process_full_frame"] == 0 and got["operate_on_gie_id"] == secondary.PGIE_ID, where
        assert got["networkType"] == 100 and got["output_tensor_meta"] == 1, where
        # FaceMesh's input, as toolchain/models/facemesh.py and recipes/facemesh.yaml say: 192x192 RGB, x / 255
        assert got["inferInputDims"] == [3, 192, 192] and got["networkInputFormat"] == 0, where  # 0 = RGB
        assert got["networkScaleFactor"] == pytest.approx(1 / 255) and got["offsets"] == [0.0, 0.0, 0.0], where
        assert got["maintain_aspect_ratio"] == 0 and got["transform_filter"] == 1, where
        assert got["outputLayerNames"] == [fm.outputs.scores, fm.outputs.landmarks], where
        assert got["maxBatchSize"] == fm.input.batch.max, where
        # nvinfer saves the engine it builds under the configured name (no rebuild at every start)
        assert got["mode_fallback"] == "" and got["built_engine_path"] == info["engine"], where
        assert got["modelEngineFilePath"] == info["engine"], where
        assert got["networkMode"] == {"fp32": 0, "fp16": 2}[prec], where


def test_sgie_is_found_by_deepstream_apps_parser(emitted, tmp_path):
    from toolchain.nvinfer.keyfile import render

    _, _, path, info = emitted[-1]
    app = tmp_path / "app.txt"
    groups = [("application", [("enable-perf-measurement", False, None)]),
              ("primary-gie", [("enable", True, None), ("gie-unique-id", 1, None), ("config-file", "pgie.txt", None)]),
              secondary.secondary_app_group(path.name, info["batch_size"])]
    app.write_text(render(groups))
    got, messages = conformance.parse_app_config(app)
    assert got["parsed"] is True, messages
    assert got["secondary_gies"] == [{"enable": 1, "unique_id": secondary.SGIE_ID,
                                      "operate_on_gie_id": secondary.PGIE_ID, "batch_size": info["batch_size"],
                                      "config_file_path": str(tmp_path / path.name)}], messages


def test_component_params_follow_the_recipes(recipes):
    det, fm = recipes
    p = secondary.component_params(fm, det.contour)
    assert p == {"pgie_id": 1, "sgie_id": 2, "scale": 1.5, "presence_threshold": det.contour.presence,
                 "presence_is_logit": 0, "landmark_scale": 1.0}


def test_pipeline_fragment_names_the_components_in_order(emitted):
    _, _, path, info = emitted[-1]
    frag = info["pipeline"]
    square, sgie, apply = frag.split(" ! ")
    assert square.startswith("nvdsvideotemplate") and 'customlib-props="stage:square"' in square
    assert sgie == f'nvinfer config-file-path="$HERE/{path.name}"'
    assert 'customlib-props="stage:apply"' in apply and 'customlib-props="sgie-id:2"' in apply
    assert secondary.CONTOUR_LIB in square and 'customlib-props="scale:1.5"' in square


def test_contour_component_reads_the_tensor_meta_nvidia_attaches(emitted, recipes):
    """NVIDIA's attach_tensor_output_meta (gstnvinfer_meta_utils.cpp), driven by the emitted SGIE config,
    lays out each object's output (its slice j of the batch's host buffers, unique_id, letterbox flags);
    fbtool_contour_apply reads that and gives the Python reference's box and mask."""
    import math

    import numpy as np

    from toolchain.nvinfer.emulation.secondary import object_crop
    from toolchain.reference import contour as C

    det, _ = recipes
    _, _, path, _ = emitted[-1]
    rng = np.random.default_rng(3)
    boxes = [(400.5, 300.25, 90.0, 120.0), (1000.0, 500.0, 60.0, 64.0), (1500.0, 200.0, 110.0, 100.0)]
    spec = ["frame 1920 1080", "net 192 192", f"params 1 1.5 {det.contour.presence} 0 1"]
    spec += [f"obj 1 {x} {t} {w} {h} 0.75" for x, t, w, h in boxes] + ["obj 3 10 10 40 40 -1"]
    outs = []
    for k, presence in enumerate((0.98, 0.2, 0.9)):  # the middle face: "no face" -> the detector's box and mask
        th = np.linspace(-math.pi / 2, 3 * math.pi / 2, 36, endpoint=False)
        lm = np.column_stack([rng.uniform(70, 120, 468), rng.uniform(70, 120, 468), np.zeros(468)])
        lm[list(C.FACE_OVAL), 0] = 96 + (50 + 5 * k) * np.cos(th)
        lm[list(C.FACE_OVAL), 1] = 100 + 65 * np.sin(th)
        outs.append(np.concatenate([[presence], lm.reshape(-1)]))
    got = conformance.tensor_meta_contour(path, spec, np.array(outs))
    assert got["unique_id"] == secondary.SGIE_ID and got["operate_on_gie_id"] == secondary.PGIE_ID
    assert got["contoured"] == 2
    objs = got["objects"]
    assert [o["tensor_metas"] for o in objs] == [1, 1, 1, 0]  # the gie-3 object gets none
    assert all(o["meta_unique_id"] == 2 and o["meta_maintain"] == 0 for o in objs[:3])
    for k in (0, 2):
        sq = C.square_rect(*boxes[k], 1920, 1080)
        poly = C.oval_polygon(outs[k][1:].reshape(468, 3), object_crop(*sq, 192, 192).crop())
        (x1, y1, x2, y2), grid = C.contour_object(poly, float(np.float32(outs[k][0])), det.contour.presence, 1920, 1080)
        assert objs[k]["rect"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
        assert (np.array(objs[k]["mask"], np.float32).reshape(32, 32) == grid).all()
    assert [float(np.float32(v)) for v in objs[1]["rect"]] == [float(np.float32(v)) for v in boxes[1]]
    assert objs[1]["mask"] == [0.75] * 1024
    assert objs[3]["rect"] == [10, 10, 40, 40]
