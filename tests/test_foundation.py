"""Issue 2: recipe, weights store, model, reference post-processing, export parity, detect."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from toolchain.cli import cli
from toolchain.detector import detect_batch
from toolchain.errors import FbtoolError
from toolchain.recipe import load_recipe, recipe_from_dict

# --- the default model on real frames -------------------------------------------------------------

def test_default_model_finds_classroom_faces(recipe, torch_runner, classroom_frame):
    dets = detect_batch([classroom_frame], recipe, torch_runner)[0]
    assert len(dets) == 4  # four students at the desks, ~18 px faces
    assert dets.scores.min() > 0.9
    w = dets.boxes[:, 2] - dets.boxes[:, 0]
    assert ((w > 10) & (w < 40)).all()
    assert dets.landmarks.shape == (4, 5, 2)


def test_default_model_finds_headpose_faces(recipe, torch_runner, headpose_frame):
    dets = detect_batch([headpose_frame], recipe, torch_runner)[0]
    assert len(dets) == 2
    assert dets.scores.min() > 0.99
    # landmarks lie inside their face boxes
    for b, lm in zip(dets.boxes, dets.landmarks):
        assert (lm[:, 0] > b[0]).all() and (lm[:, 0] < b[2]).all()
        assert (lm[:, 1] > b[1]).all() and (lm[:, 1] < b[3]).all()


def test_documented_anchor_count_at_640x384(recipe, torch_runner, classroom_frame):
    """SOURCES.md: classroom frame 0 at 640x384 input gives 16 anchors above 0.5, best 0.998."""
    import cv2

    from toolchain.reference.preprocess import normalize

    x = normalize(cv2.resize(classroom_frame, (640, 384)), "bgr", recipe.preprocess.mean, 1.0)
    conf = torch_runner.infer({"input": x[None]})["conf"][0, :, 1]
    assert int((conf > 0.5).sum()) == 16
    assert conf.max() == pytest.approx(0.998, abs=1e-3)


# --- export ---------------------------------------------------------------------------------------

def test_export_parity_batch_1_and_4(exported, recipe):
    _, info = exported
    rows = info["parity"]
    assert {r["batch"] for r in rows} == {1, 4}
    assert {r["output"] for r in rows} == {"loc", "conf", "landmarks"}
    for r in rows:
        assert r["max_abs"] <= 1e-4, r
        assert r["finite"]


def test_export_graph_has_dynamic_batch_and_metadata(onnx_path, recipe):
    import onnx

    from toolchain.onnx_meta import get_metadata

    m = onnx.load(str(onnx_path))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, 384, 640]
    assert [o.name for o in m.graph.output] == ["loc", "conf", "landmarks"]
    assert m.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10080
    meta = get_metadata(m)
    assert meta["recipe_hash"] == recipe.hash
    assert meta["preprocess"]["mean"] == [104.0, 117.0, 123.0]
    assert meta["anchors"]["steps"] == [8, 16, 32]
    assert meta["output_layout"] == "raw"
    assert not [n for n in m.graph.node if n.op_type in ("Shape", "Gather")]


def test_export_records_manifest(exported):
    from toolchain.runfolder import RunFolder

    out, _ = exported
    run = RunFolder(out)
    assert run.artifact("export", "onnx").name == "model.onnx"
    assert run.stage("export")["info"]["opset"] == 18


def test_export_fails_when_parity_breaks(tmp_path, recipe, monkeypatch):
    """A tolerance the export cannot meet stops it and leaves no ONNX file behind."""
    import dataclasses

    tight = dataclasses.replace(recipe, tolerances=dataclasses.replace(recipe.tolerances, export_abs=1e-12))
    from toolchain.export import export

    with pytest.raises(FbtoolError, match="differs from PyTorch"):
        export(tight, tmp_path)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*part*"))


# --- one-line errors, no partial files ------------------------------------------------------------

def _run(args):
    r = CliRunner().invoke(cli, args)
    return r.exit_code, r.output.strip()


def _one_line_error(code, out):
    assert code == 2, out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "hint:" in lines[0], out


def test_corrupted_weights_one_line_error(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a checkpoint")
    code, out = _run(["export", "--weights", str(bad), "-o", str(tmp_path / "run")])
    _one_line_error(code, out)
    assert "sha256" in out
    assert not (tmp_path / "run" / "model.onnx").exists()


def test_corrupted_weights_with_matching_hash_cannot_load(tmp_path, recipe):
    """A file whose hash the recipe trusts but torch cannot unpickle: still one line, no file."""
    import yaml

    from toolchain.fsutil import sha256_file

    bad = tmp_path / "w.pth"
    bad.write_bytes(b"\x80\x02garbage" * 10)
    d = yaml.safe_load(open(recipe.source))
    d["weights"]["sha256"] = sha256_file(bad)
    rp = tmp_path / "r.yaml"
    rp.write_text(yaml.safe_dump(d))
    code, out = _run(["export", "--recipe", str(rp), "--weights", str(bad), "-o", str(tmp_path / "run")])
    _one_line_error(code, out)
    assert "could not be read" in out
    assert not (tmp_path / "run" / "model.onnx").exists()


def test_wrong_sha256_in_recipe(tmp_path, recipe):
    import yaml

    d = yaml.safe_load(open(recipe.source))
    d["weights"]["sha256"] = "0" * 64
    rp = tmp_path / "r.yaml"
    rp.write_text(yaml.safe_dump(d))
    code, out = _run(["export", "--recipe", str(rp), "-o", str(tmp_path / "run")])
    _one_line_error(code, out)
    assert "expected 000000000000" in out
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())


@pytest.mark.parametrize("path,value,field", [
    (("preprocess", "color"), "yuv", "preprocess.color"),
    (("input", "width"), 650, "input.width"),
    (("anchors", "min_sizes"), [[10, 20]], "anchors.min_sizes"),
    (("thresholds", "scor"), 0.5, "thresholds.scor"),
    (("preprocess", "mean"), "dark", "preprocess.mean"),
])
def test_recipe_bad_field_names_itself(tmp_path, recipe, path, value, field):
    import yaml

    d = yaml.safe_load(open(recipe.source))
    d[path[0]][path[1]] = value
    with pytest.raises(FbtoolError) as e:
        recipe_from_dict(d)
    assert f"'{field}" in str(e.value)
    rp = tmp_path / "r.yaml"
    rp.write_text(yaml.safe_dump(d))
    code, out = _run(["export", "--recipe", str(rp), "-o", str(tmp_path / "run")])
    _one_line_error(code, out)
    assert field in out
    assert not (tmp_path / "run").exists()


def test_unreadable_image_one_line_error(tmp_path):
    img = tmp_path / "broken.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out_png = tmp_path / "out.png"
    code, out = _run(["detect", str(img), "-o", str(out_png)])
    _one_line_error(code, out)
    assert "cannot read image" in out
    assert not out_png.exists() and not list(tmp_path.glob(".*part*"))


def test_truncated_video_one_line_error(tmp_path):
    from toolchain.media import resolve_media

    src = resolve_media("one-by-one-person-detection.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src[: len(src) // 3])
    out_mp4 = tmp_path / "out.mp4"
    code, out = _run(["detect", str(cut), "-o", str(out_mp4)])
    assert code == 2 and out.startswith("Error: ") and len(out.splitlines()) == 1, out
    assert not out_mp4.exists() and not list(tmp_path.glob(".*part*"))


def test_detect_writes_annotated_image_and_json(tmp_path):
    import json

    import cv2

    out_png, js = tmp_path / "c.png", tmp_path / "c.jsonl"
    code, out = _run(["detect", "classroom.gif", "-o", str(out_png), "--json", str(js)])
    assert code == 0, out
    assert "4 faces" in out
    img = cv2.imread(str(out_png))
    assert img.shape == (270, 480, 3)
    faces = json.loads(js.read_text().splitlines()[0])["faces"]
    assert len(faces) == 4 and all(len(f["landmarks"]) == 5 for f in faces)


def test_help_works_without_heavy_imports():
    import subprocess
    import sys

    code = ("import sys; from toolchain.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'modelopt') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "export" in r.stdout


# --- recipes --------------------------------------------------------------------------------------

def test_recipe_hash_is_stable_and_content_based(recipe):
    again = load_recipe(recipe.source)
    assert again.hash == recipe.hash
    assert [list(r) for r in recipe.to_dict()["anchors"]["min_sizes"]] == [[10, 20], [32, 64], [128, 256]]
    import dataclasses

    moved = dataclasses.replace(recipe, thresholds=dataclasses.replace(recipe.thresholds, score=0.6))
    assert moved.hash != recipe.hash


def test_unknown_recipe_name_lists_known_ones():
    with pytest.raises(FbtoolError) as e:
        load_recipe("no_such_model")
    assert "retinaface_mnet025" in str(e.value)


# --- weights store --------------------------------------------------------------------------------

def test_weights_store_mirror_and_sha(tmp_path, monkeypatch, recipe):
    import shutil

    from toolchain import weights

    monkeypatch.setenv("FBTOOL_CACHE", str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    src = weights.resolve_weights(recipe.weights)
    shutil.copy(src, mirror / recipe.weights.file)
    monkeypatch.setenv("FBTOOL_WEIGHTS_MIRROR", str(mirror))
    assert weights.resolve_weights(recipe.weights) == mirror / recipe.weights.file
    (mirror / recipe.weights.file).write_bytes(b"tampered")
    with pytest.raises(FbtoolError, match="sha256"):
        weights.resolve_weights(recipe.weights)


def test_weights_missing_everywhere_is_clear(tmp_path, monkeypatch, recipe):
    import dataclasses

    from toolchain import weights

    monkeypatch.setenv("FBTOOL_CACHE", str(tmp_path / "cache"))
    spec = dataclasses.replace(recipe.weights, file="absent.pth", url=None)
    with pytest.raises(FbtoolError) as e:
        weights.resolve_weights(spec)
    assert "FBTOOL_WEIGHTS_MIRROR" in str(e.value)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    from toolchain.fsutil import atomic_path

    target = tmp_path / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
