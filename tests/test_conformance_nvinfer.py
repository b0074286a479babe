"""NVIDIA's own Gst-nvinfer code (gst_nvinfer_init, gst_nvinfer_parse_config_file,
NvDsInferContext_ResetInitParams, gst_nvinfer_start's early checks), compiled unmodified from the
DeepStream 9.1 sources by plugins/conformance, reads every config fbtool emits.

Skipped, with the reason, where neither ../shared/third_party nor $DEEPSTREAM_ROOT/sources is there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from toolchain.nvinfer import conformance

pytestmark = pytest.mark.skipif(conformance.missing_reason() is not None,
                                reason=f"NVIDIA's DeepStream code cannot be built here: {conformance.missing_reason()}")

VERSIONS = ("7.1", "8.0", "9.0", "9.1")
PRECISIONS = ("fp32", "fp16", "int8")
MODEL = "retinaface_mnet025"


@pytest.fixture(scope="module")
def emitted(exported, recipe, tmp_path_factory):
    """Every config fbtool emits: 4 DeepStream versions x fp32/fp16/int8 x mask/no-mask (24)."""
    from toolchain.deepstream import emit
    from toolchain.runfolder import RunFolder

    src_run, info = exported
    run = tmp_path_factory.mktemp("confrun")
    shutil.copy(src_run / "model.onnx", run / "model.onnx")
    rf = RunFolder(run)
    rf.record("export", {"onnx": run / "model.onnx"}, info)
    # calibrate's artifacts: only their paths matter to the config (stand-ins, no TensorRT involved)
    (run / "int8_calib_entropy.cache").write_text("TRT-100900-EntropyCalibration2\ninput: 3c010a14\n")
    shutil.copy(run / "model.onnx", run / "model_int8_entropy.onnx")
    rf.record("calibrate", {"calib_cache": run / "int8_calib_entropy.cache",
                            "int8_qdq": run / "model_int8_entropy.onnx"})
    out = []
    for ds in VERSIONS:
        for prec in PRECISIONS:
            for mask in (True, False):
                d = tmp_path_factory.mktemp(f"ds{ds}-{prec}-{'mask' if mask else 'nomask'}")
                info = emit(recipe, run, precision=prec, ds_version=ds, ds_dir=d, mask=mask)
                out.append((ds, prec, mask, Path(info["files"]["infer_config"]), info))
    return out


def test_every_emitted_config_parses_true_with_no_unknown_key(emitted, recipe):
    assert len(emitted) == 24
    for ds, prec, mask, path, info in emitted:
        got, messages = conformance.parse_nvinfer_config(path)
        where = f"DeepStream {ds} {prec} {'mask' if mask else 'no-mask'}: {messages}"
        assert got["parsed"] is True, where
        assert conformance.unknown_keys(messages) == [], where
        assert "start" not in got, where  # gst_nvinfer_start's early checks pass
        # what nvinfer made of it is what fbtool meant
        assert got["networkType"] == (3 if mask else 0), where
        assert got["clusterMode"] == (4 if mask else 2), where
        assert got["output_instance_mask"] == int(mask), where
        assert got["crop_objects_to_roi_boundary"] == 1, where
        assert got["numDetectedClasses"] == len(recipe.labels), where
        assert got["onnxFilePath"] == info["onnx"] and got["modelEngineFilePath"] == info["engine"], where
        assert got["maxBatchSize"] == info["batch_size"] and got["process_full_frame"] == 1, where
        assert got["useStronglyTyped"] == int(info["int8"] == "qdq"), where
        assert bool(got["int8CalibrationFilePath"]) == (info["int8"] == "calib_cache"), where
        assert got["networkInputFormat"] == 1 and got["offsets"] == [104.0, 117.0, 123.0], where  # BGR
        assert got["inferInputDims"] == [3, recipe.input.height, recipe.input.width], where
        assert got["maintain_aspect_ratio"] == 1 and got["transform_filter"] == 1, where
        func = got["customBBoxInstanceMaskParseFuncName"] if mask else got["customBBoxParseFuncName"]
        assert func == ("NvDsInferParseFbtoolFaceMask" if mask else "NvDsInferParseFbtoolFace"), where
        c = got["classes"][0]
        t = recipe.thresholds
        assert c["preClusterThreshold"] == pytest.approx(t.score) and c["topK"] == t.top_k, where
        assert c["nmsIOUThreshold"] == pytest.approx(t.nms_iou), where


def test_nvinfer_builds_the_engine_under_the_configured_name(emitted):
    """Defect 2: the engine nvinfer builds and saves (buildModel's name, after the INT8 -> FP16 fallback)
    must be model-engine-file, else it is rebuilt at every start."""
    for ds, prec, mask, path, info in emitted:
        got, _ = conformance.parse_nvinfer_config(path)
        assert not info["engine_from_manifest"]
        assert got["built_engine_path"] == got["modelEngineFilePath"], (ds, prec, mask, got["mode_fallback"])
        assert got["mode_fallback"] == "", (ds, prec, mask)


def _edit(path: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    out = tmp_path / "edited.txt"
    out.write_text(text.replace(old, new))
    return out


def _config(emitted, ds="9.1", prec="fp32", mask=True) -> Path:
    return next(p for d, pr, m, p, _ in emitted if (d, pr, m) == (ds, prec, mask))


def _checker_errors(path: Path, ds="9.1") -> list[str]:
    from toolchain.nvinfer import keys
    from toolchain.nvinfer.keyfile import parse

    return [str(f) for f in keys.check(parse(path.read_text(), str(path)), ds, "nvinfer") if f.level == "error"]


@pytest.mark.parametrize("old, new, nvidia_accepts", [
    ("topk=750", "topk=-1", False),                       # "Invalid topk value -1"
    ("topk=750", "topk=0", True),
    ("batch-size=16", "batch-size=16 # sixteen", True),    # GLib's strtol stops at whitespace
    ("segmentation-threshold=0.5", "segmentation-threshold=0.5 # edge", False),
    ("pre-cluster-threshold=0.5", "pre-cluster-threshold=-0.5", False),
])
def test_checker_agrees_with_nvidias_parser(emitted, tmp_path, old, new, nvidia_accepts):
    edited = _edit(_config(emitted), tmp_path, old, new)
    got, messages = conformance.parse_nvinfer_config(edited)
    assert got["parsed"] is nvidia_accepts, messages
    assert (_checker_errors(edited) == []) is nvidia_accepts, _checker_errors(edited)


def test_unknown_key_is_reported_by_both(emitted, tmp_path):
    edited = _edit(_config(emitted), tmp_path, "[property]\n", "[property]\nbatch-szie=4\n")
    got, messages = conformance.parse_nvinfer_config(edited)
    assert conformance.unknown_keys(messages), messages
    assert any("batch-szie" in e for e in _checker_errors(edited))


def test_glib_reads_values_as_the_checker_does(tmp_path):
    """keys.convert follows GLib's GKeyFile (the library DeepStream reads configs with)."""
    from toolchain.nvinfer import keys

    cases = {"a": ("4 # four", "int"), "b": (" 4", "int"), "c": ("4x", "int"), "d": ("0.5 # x", "double"),
             "e": ("true ", "bool"), "f": ("1 # x", "bool"), "g": ("true", "int"), "h": ("+3", "int")}
    f = tmp_path / "k.txt"
    f.write_text("[p]\n" + "".join(f"{k}={v}\n" for k, (v, _) in cases.items()))
    table_type = {"int": "int", "double": "float", "bool": "bool"}
    for key, (value, kind) in cases.items():
        glib = conformance.glib_read(f, "p", key, kind)
        try:
            ours = keys.convert({"type": table_type[kind]}, value.strip() if kind == "bool" else value)
        except ValueError:
            ours = None
        if "error" in glib:
            assert ours is None, (key, value, ours)
        else:
            assert ours == glib["value"], (key, value, ours, glib)


def test_num_detected_classes_default_matches_nvinfer(emitted, tmp_path):
    """NvDsInferContext_ResetInitParams: numDetectedClasses = 0; the emulation reads the same."""
    import re

    from toolchain.nvinfer.emulation.config import read_config

    text = re.sub(r"num-detected-classes=\d+\n", "", _config(emitted).read_text())
    path = tmp_path / "no_classes.txt"
    path.write_text(text)
    got, _ = conformance.parse_nvinfer_config(path)
    assert got["parsed"] and got["numDetectedClasses"] == 0
    assert read_config(path).num_classes == 0


def test_cluster_mode_error_is_nvidias_first_one(emitted, tmp_path):
    """gst_nvinfer_start refuses an instance-mask config with a cluster mode before nvdsinfer does;
    the emulation quotes that message."""
    from toolchain.errors import FbtoolError
    from toolchain.nvinfer.emulation import NvInferEmulator
    from toolchain.nvinfer.emulation.config import NvInferConfig, read_config

    edited = _edit(_config(emitted), tmp_path, "cluster-mode=4", "cluster-mode=2")
    got, _ = conformance.parse_nvinfer_config(edited)
    assert got["start"] is False
    assert got["start_error"] == "Instance mask output not supported with cluster mode 2"
    good = read_config(_config(emitted))  # the checker refuses the edited file; build its typed form
    bad = NvInferConfig(good.path, {**good.props, "cluster-mode": 2}, good.class_attrs)
    with pytest.raises(FbtoolError) as exc:
        NvInferEmulator(bad, parser=None)
    assert got["start_error"] in str(exc.value)


# --- deepstream-app's own parser (deepstream_app_config_parser.c + deepstream_config_file_parser.c) ---
def _app_groups(path: Path) -> dict:
    from toolchain.nvinfer.keyfile import parse

    return {g: {k: e.value for k, e in entries.items()} for g, entries in parse(path.read_text(), str(path)).groups.items()}


def test_every_app_config_parses_and_enabled_groups_come_out_enabled(emitted):
    for ds, prec, mask, _, info in emitted:
        app = Path(info["files"]["app_config"])
        got, messages = conformance.parse_app_config(app)
        where = f"DeepStream {ds} {prec} {'mask' if mask else 'no-mask'}: {messages}"
        assert got["parsed"] is True, where
        ours = _app_groups(app)
        assert got["primary_gie"]["enable"] == int(ours["primary-gie"]["enable"]) == 1, where
        assert got["primary_gie"]["unique_id"] == 1 and got["primary_gie"]["batch_size"] == info["batch_size"], where
        assert Path(got["primary_gie"]["config_file_path"]) == Path(info["files"]["infer_config"]), where
        assert got["osd"]["enable"] == int(ours["osd"]["enable"]) == 1, where
        sources = [g for g in ours if g.startswith("source")]
        sinks = [g for g in ours if g.startswith("sink")]
        assert len(got["sources"]) == len(sources) and len(got["sinks"]) == len(sinks), where
        for s, g in zip(got["sources"], sources):
            # a multi-URI source (3) comes out as num-sources URI sources (2)
            assert s["enable"] == int(ours[g]["enable"]) == 1 and s["type"] == {3: 2}.get(int(ours[g]["type"]),
                                                                                     int(ours[g]["type"])), where
        for s, g in zip(got["sinks"], sinks):
            assert s["enable"] == int(ours[g]["enable"]) == 1 and s["type"] == int(ours[g]["type"]), where
        assert got["streammux"]["width"] == int(ours["streammux"]["width"]), where


@pytest.mark.parametrize("group", ["source0", "primary-gie", "sink0"])
def test_app_booleans_are_integers_for_deepstream_and_the_checker(emitted, tmp_path, group):
    """deepstream-app reads `enable` with g_key_file_get_integer: `enable=true` does not enable the
    group (the parse fails); the checker refuses it."""
    from toolchain.nvinfer import keys
    from toolchain.nvinfer.keyfile import parse

    app = Path(emitted[-1][4]["files"]["app_config"])
    text = app.read_text()
    start = text.index(f"[{group}]")
    i = text.index("enable=1", start)
    edited = tmp_path / "app.txt"
    edited.write_text(text[:i] + "enable=true" + text[i + len("enable=1"):])
    got, _ = conformance.parse_app_config(edited)
    enabled = {"source0": lambda g: g["sources"] and g["sources"][0]["enable"],
               "primary-gie": lambda g: g["primary_gie"]["enable"],
               "sink0": lambda g: g["sinks"] and g["sinks"][0]["enable"]}[group](got)
    assert not (got["parsed"] and enabled), got
    errors = [f for f in keys.check(parse(edited.read_text(), str(edited)), "9.1", "deepstream_app") if f.level == "error"]
    assert any(f.key == "enable" and f.group == group for f in errors), [str(f) for f in errors]


def test_source_and_sink_types_are_nvidias_enums():
    """The key table's [source] and [sink] `type` values are NvDsSourceType / NvDsSinkType of the
    sources (deepstream_sources.h, deepstream_sinks.h; x86 branch)."""
    import re

    from toolchain.nvinfer import keys

    inc = conformance.find_sources().app_common / "includes"
    table = keys.load_table()["deepstream_app"]["groups"]

    def enum_values(header: str, prefix: str) -> list[int]:
        text = (inc / header).read_text()
        body = text[text.index(f"{prefix}") - 200:]
        body = body[body.index("{") + 1: body.index("}")]
        body = re.sub(r"#ifndef IS_TEGRA\n(.*?)#else\n.*?#endif", r"\1", body, flags=re.S)  # x86
        names = re.findall(rf"({prefix}\w+)(?:\s*=\s*(\d+))?", body)
        out, v = [], 0
        for _, explicit in names:
            v = int(explicit) if explicit else v + 1
            out.append(v)
        return out

    assert table["source"]["type"]["enum"] == enum_values("deepstream_sources.h", "NV_DS_SOURCE_")
    assert table["sink"]["type"]["enum"] == enum_values("deepstream_sinks.h", "NV_DS_SINK_")


def test_cli_check_uses_nvidias_parser_and_says_so(emitted, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from toolchain.cli import cli

    good = _config(emitted, "9.1", "fp32", True)
    r = CliRunner().invoke(cli, ["deepstream", "--check", str(good)])
    assert r.exit_code == 0, r.output
    assert "gst_nvinfer_parse_config_file" in r.output and "key table" in r.output
    app = Path(next(i for d, p, m, _, i in emitted if (d, p, m) == ("9.1", "fp32", True))["files"]["app_config"])
    r = CliRunner().invoke(cli, ["deepstream", "--check", str(app)])
    assert r.exit_code == 0 and "deepstream-app's parse_config_file" in r.output, r.output
    # what only NVIDIA's code sees: an int8-calib-file that is not there makes nvinfer build FP16
    int8 = _config(emitted, "8.0", "int8", True)
    moved = tmp_path / "int8.txt"
    moved.write_text(int8.read_text().replace("int8_calib_entropy.cache", "missing.cache"))
    r = CliRunner().invoke(cli, ["deepstream", "--check", str(moved), "--deepstream", "8.0"])
    assert r.exit_code == 2 and "Trying FP16 mode" in r.output, r.output
    monkeypatch.setattr(conformance, "missing_reason", lambda: "no DeepStream sources (test)")
    r = CliRunner().invoke(cli, ["deepstream", "--check", str(good)])
    assert r.exit_code == 0 and "not checked with NVIDIA's parser: no DeepStream sources" in r.output, r.output
