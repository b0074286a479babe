"""`fbtool deepstream`: emitted configs against golden files, and the key-table checker.

Golden files (tests/golden/) are compared after normalising absolute paths, the fbtool version and
the recipe hash. Regenerate them with FBTOOL_UPDATE_GOLDEN=1 after an intended change.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
MODEL = "retinaface_mnet025"


@pytest.fixture(scope="module")
def ds_run(exported, tmp_path_factory):
    """A run folder of its own holding only the session's export (other tests add stages to `exported`)."""
    from toolchain.runfolder import RunFolder

    src_run, info = exported
    run = tmp_path_factory.mktemp("dsrun")
    shutil.copy(src_run / "model.onnx", run / "model.onnx")
    RunFolder(run).record("export", {"onnx": run / "model.onnx"}, info)
    return run


def _normalise(text: str, run: Path, ds: Path) -> str:
    from toolchain import __version__

    text = text.replace(str(ds.resolve()), "<DS>").replace(str(run.resolve()), "<RUN>")
    text = text.replace(f"fbtool {__version__}", "fbtool <VERSION>")
    return re.sub(r"recipe hash [0-9a-f]{16}", "recipe hash <HASH>", text)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("FBTOOL_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}: run with FBTOOL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file (FBTOOL_UPDATE_GOLDEN=1 to accept)"


def _emit(recipe, run, tmp_path, **kw):
    from toolchain.deepstream import emit

    ds = tmp_path / "ds"
    info = emit(recipe, run, ds_dir=ds, **kw)
    return ds, info


def test_fp32_ds91_matches_golden_and_is_recorded(recipe, ds_run, tmp_path):
    from toolchain.nvinfer import keys
    from toolchain.runfolder import RunFolder

    ds, info = _emit(recipe, ds_run, tmp_path, precision="fp32", ds_version="9.1")
    infer = ds / f"config_infer_primary_{MODEL}.txt"
    app = ds / f"deepstream_app_{MODEL}.txt"
    blur = ds / f"run_blur_{MODEL}.sh"
    _golden("config_infer_fp32_ds9.1.txt", _normalise(infer.read_text(), ds_run, ds))
    _golden("deepstream_app_ds9.1.txt", _normalise(app.read_text(), ds_run, ds))
    _golden("run_blur_ds9.1.sh", _normalise(blur.read_text(), ds_run, ds))
    assert (ds / "labels.txt").read_text() == "face\n"
    assert os.access(blur, os.X_OK)
    if shutil.which("bash"):  # the script is not run here (no DeepStream), but it must parse
        import subprocess

        assert subprocess.run(["bash", "-n", str(blur)], capture_output=True).returncode == 0
    # The engine name is nvinfer's own: <onnx file>_b<max batch>_gpu<id>_<precision>.engine beside the ONNX.
    assert info["engine"] == str((ds_run / f"model.onnx_b{recipe.input.batch.max}_gpu0_fp32.engine").resolve())
    stage = RunFolder(ds_run).stage("deepstream")
    assert set(stage["artifacts"]) == {"infer_config", "app_config", "labels", "blur_app", "tracker_config",
                                        "blur_infer_config"}
    assert RunFolder(ds_run).artifact("deepstream", "infer_config").resolve() == infer.resolve()
    for f, kind in ((infer, "nvinfer"), (app, "deepstream_app")):
        assert keys.errors(keys.check_file(f, "9.1", kind)) == []


def test_values_come_from_the_model_metadata_and_recipe(recipe, ds_run, tmp_path):
    from toolchain.nvinfer.keyfile import parse
    from toolchain.onnx_meta import get_metadata

    ds, _ = _emit(recipe, ds_run, tmp_path)
    kf = parse((ds / f"config_infer_primary_{MODEL}.txt").read_text())
    meta = get_metadata(ds_run / "model.onnx")
    pre, t = meta["preprocess"], recipe.thresholds
    assert kf.get("property", "offsets") == ";".join(repr(float(m)) for m in pre["mean"])
    assert kf.get("property", "model-color-format") == ("1" if pre["color"] == "bgr" else "0")
    assert kf.get("property", "infer-dims") == f"3;{meta['input']['height']};{meta['input']['width']}"
    assert kf.get("class-attrs-all", "pre-cluster-threshold") == repr(t.score)
    assert kf.get("class-attrs-all", "topk") == str(t.top_k)
    # Instance masks: nvinfer's instance-segmentation post-processor only takes cluster-mode=4.
    assert kf.get("property", "network-type") == "3" and kf.get("property", "cluster-mode") == "4"


def test_fp16_ds71_and_no_mask_variants(recipe, ds_run, tmp_path):
    ds, info = _emit(recipe, ds_run, tmp_path, precision="fp16", ds_version="7.1")
    assert not (ds / f"run_blur_{MODEL}.sh").exists()  # mask-area blur is DeepStream 9.x only
    _golden("config_infer_fp16_ds7.1.txt", _normalise((ds / f"config_infer_primary_{MODEL}.txt").read_text(),
                                                       ds_run, ds))
    ds2, _ = _emit(recipe, ds_run, tmp_path / "nm", precision="fp32", ds_version="9.1", mask=False)
    _golden("config_infer_nomask_ds9.1.txt", _normalise((ds2 / f"config_infer_primary_{MODEL}.txt").read_text(),
                                                        ds_run, ds2))


def test_int8_paths(recipe, ds_run, tmp_path):
    from toolchain.errors import FbtoolError
    from toolchain.runfolder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ds_run / "model.onnx", run / "model.onnx")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"})
    with pytest.raises(FbtoolError, match="calibrate"):
        _emit(recipe, run, tmp_path / "a", precision="int8", ds_version="8.0")
    # Calibrate's artifacts: only their paths matter to the config (stand-in files, no TensorRT involved).
    (run / "int8_calib_entropy.cache").write_text("TRT-100900-EntropyCalibration2\ninput: 3c010a14\n")
    shutil.copy(run / "model.onnx", run / "model_int8_entropy.onnx")
    rf.record("calibrate", {"calib_cache": run / "int8_calib_entropy.cache",
                            "int8_qdq": run / "model_int8_entropy.onnx"})
    ds, _ = _emit(recipe, run, tmp_path / "legacy", precision="int8", ds_version="8.0")
    _golden("config_infer_int8_ds8.0.txt", _normalise((ds / f"config_infer_primary_{MODEL}.txt").read_text(), run, ds))
    ds, info = _emit(recipe, run, tmp_path / "qdq", precision="int8", ds_version="9.0")
    text = (ds / f"config_infer_primary_{MODEL}.txt").read_text()
    _golden("config_infer_int8qdq_ds9.0.txt", _normalise(text, run, ds))
    assert "strongly-typed=1" in text and "int8-calib-file" not in text
    # network-mode=0: nvinfer sets no precision flag and names the engine _fp32 (nvdsinfer_model_builder.cpp);
    # tests/test_conformance_nvinfer.py checks the name against NVIDIA's parser and naming rule
    assert "network-mode=0" in text
    assert info["engine"].endswith("model_int8_entropy.onnx_b16_gpu0_fp32.engine")


# --- the checker ---------------------------------------------------------------------------------
def _infer_text() -> str:
    return (GOLDEN / "config_infer_fp32_ds9.1.txt").read_text()


def _findings(text: str, version: str = "9.1", kind: str | None = None):
    from toolchain.nvinfer import keys
    from toolchain.nvinfer.keyfile import parse

    return keys.errors(keys.check(parse(text), version, kind))


def test_golden_configs_pass_the_checker():
    assert _findings(_infer_text()) == []
    assert _findings((GOLDEN / "deepstream_app_ds9.1.txt").read_text()) == []


@pytest.mark.parametrize("edit, key, words", [
    (lambda t: t.replace("[property]\n", "[property]\nbatch-szie=4\n"), "batch-szie", "unknown key"),
    (lambda t: t.replace("network-mode=0", "network-mode=7"), "network-mode", "not one of"),
    (lambda t: re.sub(r"parse-bbox-instance-mask-func-name=.*\n", "", t), "parse-bbox-instance-mask-func-name",
     "required"),
    (lambda t: t.replace("cluster-mode=4", "cluster-mode=2"), "cluster-mode", "must be 4"),
    # GLib reads `batch-size=16 # max` as 16 (strtol stops at whitespace) but not a float or a boolean
    (lambda t: t.replace("segmentation-threshold=0.5", "segmentation-threshold=0.5 # edge"), "segmentation-threshold",
     "inline comments"),
    (lambda t: t.replace("output-instance-mask=1", "output-instance-mask=1 # on"), "output-instance-mask",
     "inline comments"),
    (lambda t: t.replace("pre-cluster-threshold=0.5", "pre-cluster-threshold=1.5"), "pre-cluster-threshold",
     "maximum"),
    (lambda t: t.replace("infer-dims=3;384;640", "infer-dims=3;384"), "infer-dims", "needs 3"),
    (lambda t: t.replace("[class-attrs-all]", "[class-attr-all]"), None, "unknown group"),
])
def test_checker_names_the_bad_key(edit, key, words):
    bad = _findings(edit(_infer_text()))
    assert bad, "the checker accepted a broken config"
    assert any(f.key == key and words in str(f) for f in bad), [str(f) for f in bad]


def test_checker_knows_versions():
    text = _infer_text().replace("[property]\n", "[property]\nstrongly-typed=1\n")
    assert _findings(text, "9.0") == []
    assert any(f.key == "strongly-typed" and ">= 9.0" in f.message for f in _findings(text, "8.0"))
    old = _infer_text().replace("[property]\n", "[property]\nuff-file=model.uff\n")
    assert any(f.key == "uff-file" and "removed" in f.message for f in _findings(old, "7.1"))


def test_checker_app_groups():
    app = (GOLDEN / "deepstream_app_ds9.1.txt").read_text()
    bad = _findings(re.sub(r"^config-file=.*\n", "", app, flags=re.M))
    assert any(f.group == "primary-gie" and f.key == "config-file" for f in bad)
    bad = _findings(app.replace("# file\ntype=3", "# file\ntype=9"))
    assert any(f.group == "sink0" and f.key == "type" for f in bad)
    bad = _findings(app.replace("[osd]", "[osd]\nblur-bbox=2"))  # deepstream-app's [osd] has no blur keys
    assert any(f.key == "blur-bbox" and "unknown key" in f.message for f in bad)


def test_cli_check(tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli

    good = tmp_path / "good.txt"
    good.write_text(_infer_text())
    r = CliRunner().invoke(cli, ["deepstream", "--check", str(good), "--deepstream", "9.1"])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.txt"
    bad.write_text(_infer_text().replace("network-mode=0", "network-mode=5"))
    r = CliRunner().invoke(cli, ["deepstream", "--check", str(bad)])
    assert r.exit_code == 2
    assert "network-mode" in r.output and "not one of" in r.output


def test_cli_emits_into_ds_dir(recipe, ds_run, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli

    ds = tmp_path / "out"
    r = CliRunner().invoke(cli, ["deepstream", "-o", str(ds_run), "--ds-dir", str(ds), "--precision", "fp16",
                                 "--deepstream", "8.0"])
    assert r.exit_code == 0, r.output
    assert (ds / f"config_infer_primary_{MODEL}.txt").is_file()
    assert "network-mode=2" in (ds / f"config_infer_primary_{MODEL}.txt").read_text()
    assert "deepstream: done" in r.output


def test_surgery_onnx_is_preferred_and_stale_exports_refused(recipe, ds_run, tmp_path):
    import dataclasses

    from toolchain.errors import FbtoolError
    from toolchain.runfolder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ds_run / "model.onnx", run / "model.onnx")
    shutil.copy(ds_run / "model.onnx", run / "model_surgery.onnx")  # a stand-in file: only its path matters here
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"})
    rf.record("surgery", {"onnx": run / "model_surgery.onnx"})
    _, info = _emit(recipe, run, tmp_path / "a")
    assert info["onnx"] == str((run / "model_surgery.onnx").resolve())
    assert info["engine"].endswith("model_surgery.onnx_b16_gpu0_fp32.engine")
    other = dataclasses.replace(recipe, thresholds=dataclasses.replace(recipe.thresholds, score=0.6))
    with pytest.raises(FbtoolError, match="another version of recipe"):
        _emit(other, run, tmp_path / "b")


def test_parser_built_for_another_streammux_frame_is_refused(recipe, ds_run, tmp_path):
    """The parser clips boxes to the streammux frame's part of the network input: a parser recorded
    for another frame size than the app configs' streammux must not be paired with them."""
    from toolchain.errors import FbtoolError
    from toolchain.nvinfer.names import PARSER_LIB
    from toolchain.runfolder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ds_run / "model.onnx", run / "model.onnx")
    (run / "parser").mkdir()
    (run / "parser" / PARSER_LIB).write_bytes(b"stand-in: only its record matters here")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"})
    rf.record("build-parser", {"lib": run / "parser" / PARSER_LIB}, {"ds_major": 9, "frame": [1920, 1080]})
    _emit(recipe, run, tmp_path / "a")
    rf.record("build-parser", {"lib": run / "parser" / PARSER_LIB}, {"ds_major": 9, "frame": [1280, 1024]})
    with pytest.raises(FbtoolError, match="1280x1024 streammux frame"):
        _emit(recipe, run, tmp_path / "b")
