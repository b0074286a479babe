"""`fbtool deepstream` on a two-model recipe: the detector's files plus the FaceMesh SGIE config, from
the landmark model's run folder inside the detector's (where `fbtool run` puts it)."""

from __future__ import annotations

import pytest

from toolchain.errors import FbtoolError


@pytest.fixture
def two_model_run(exported, tmp_path):
    import onnx

    from toolchain.onnx_meta import get_metadata, set_metadata
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import RunFolder, landmark_run_dir

    det = load_recipe("retinaface_mnet025_facemesh")
    src, info = exported
    run = tmp_path / "run"
    run.mkdir()
    # the two-model recipe's detector is the default model (same weights, input, outputs): the session's
    # export stands in for its own, with the two-model recipe's hash
    model = onnx.load(str(src / "model.onnx"))
    set_metadata(model, {**get_metadata(model), "recipe_hash": det.hash})
    onnx.save(model, str(run / "model.onnx"))
    RunFolder(run).record("export", {"onnx": run / "model.onnx"}, info)
    return det, run, landmark_run_dir(run, det.contour.model)


def _stand_in_landmark_export(fm_dir):
    from toolchain.runfolder import RunFolder

    fm_dir.mkdir(parents=True, exist_ok=True)
    (fm_dir / "model.onnx").write_bytes(b"stand-in: the SGIE config only names it")
    RunFolder(fm_dir).record("export", {"onnx": fm_dir / "model.onnx"})


def test_two_model_recipe_gets_the_sgie_config(two_model_run, tmp_path):
    from toolchain.deepstream import emit
    from toolchain.nvinfer.keyfile import parse
    from toolchain.runfolder import SGIE_CONFIG, RunFolder

    det, run, fm_dir = two_model_run
    _stand_in_landmark_export(fm_dir)
    info = emit(det, run, precision="fp16", ds_dir=tmp_path / "ds")
    sg = info["sgie"]
    kf = parse((tmp_path / "ds" / "config_infer_secondary_facemesh.txt").read_text())
    assert kf.get("property", "onnx-file") == str((fm_dir / "model.onnx").resolve())
    assert kf.get("property", "network-type") == "100" and kf.get("property", "operate-on-gie-id") == "1"
    assert sg["precision"] == "fp16" and sg["components"]["sgie_id"] == 2
    assert RunFolder(run).get(SGIE_CONFIG) == (tmp_path / "ds" / "config_infer_secondary_facemesh.txt").resolve()


def test_missing_landmark_model_is_one_line_with_the_command(two_model_run, tmp_path):
    from toolchain.deepstream import emit

    det, run, _ = two_model_run
    with pytest.raises(FbtoolError) as e:
        emit(det, run, ds_dir=tmp_path / "ds")
    assert "holds no ONNX of it" in str(e.value) and "fbtool run --recipe" in e.value.hint


def test_validate_reports_the_two_model_deployment(two_model_run, recipe, tmp_path):
    """validate's two-model section on a real run: detector export + FaceMesh export (onnxruntime runs
    the SGIE's onnx-file), the emitted configs, the Python reference on real frames."""
    from toolchain.deepstream import emit
    from toolchain.detector import detect_frames
    from toolchain.export import export
    from toolchain.frames import sample_frames
    from toolchain.nvinfer.emulation import ReferenceParser
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import RunFolder
    from toolchain.runners import TorchRunner
    from toolchain.validate.two_model import summary_lines, two_model_section

    det, run, fm_dir = two_model_run
    rf = RunFolder(run)
    assert two_model_section(recipe, rf, [], []) is None  # one-model recipe: no section
    assert two_model_section(det, rf, [], [])["status"] == "skipped"  # nothing emitted yet
    export(load_recipe(det.contour.model), fm_dir)
    emit(det, run, ds_dir=tmp_path / "ds")
    frames = [f for _, _, f in sample_frames(["head-pose-face-detection-female-and-male.gif"], per_clip=3, step=9)]
    ref_dets = detect_frames(frames, recipe, TorchRunner(recipe))
    # the Python stand-in for the compiled parser (build-parser is the conformance tests' business)
    tm = two_model_section(det, RunFolder(run), frames, ref_dets, parser=ReferenceParser(recipe))
    assert tm["status"] == "info", tm
    u, r = tm["vs_unrotated_reference"], tm["vs_reference"]
    assert u["both_face"] >= 3 and u["landmark_px_mean"] < 0.6 and u["mask_iou_mean"] >= 0.9, u
    assert r["both_face"] >= 3 and r["mask_iou_mean"] >= 0.75, r
    text = "\n".join(summary_lines(tm))
    print(text)
    assert "reported, not gated" in text and "vs it unrotated" in text


def test_blur_app_runs_facemesh_between_the_components(two_model_run, tmp_path):
    """The emitted blur script, run with a stand-in gst-launch-1.0 that prints its arguments: the
    FaceMesh SGIE sits between the square and apply stages, after the detector, before the blur."""
    import os
    import subprocess

    from toolchain.deepstream import emit

    det, run, fm_dir = two_model_run
    _stand_in_landmark_export(fm_dir)
    ds = tmp_path / "ds"
    info = emit(det, run, ds_dir=ds)
    script = ds / f"run_blur_{det.name}.sh"
    (ds / "libnvds_fbtool_dsblur.so").touch()  # the script refuses to start without its libraries
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gst-launch-1.0").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    (bindir / "gst-launch-1.0").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(script), "file:///in.mp4", str(tmp_path / "out.mp4")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 1 and r.stdout == "", r.stdout  # no contour library: stops before gst-launch-1.0
    assert r.stderr.startswith(f"Error: {ds.resolve()}/libnvds_fbtool_contour.so does not exist (hint: ")
    (ds / "libnvds_fbtool_contour.so").touch()
    r = subprocess.run(["bash", str(script), "file:///in.mp4", str(tmp_path / "out.mp4")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    args = r.stdout.split("\n")
    elems = " ".join(args).split(" ! ")
    names = [e.split()[0] for e in elems if e.split()]
    i = names.index("nvinfer")
    assert names[i + 1:i + 4] == ["nvdsvideotemplate", "nvinfer", "nvdsvideotemplate"] or \
        names[i + 2:i + 5] == ["nvdsvideotemplate", "nvinfer", "nvdsvideotemplate"]  # after nvtracker, if any
    j = names.index("nvinfer", i + 1)
    assert f"config-file-path={ds.resolve()}/config_infer_secondary_facemesh.txt" in elems[j]
    assert "customlib-props=stage:square" in elems[j - 1] and "customlib-props=stage:apply" in elems[j + 1]
    assert f"customlib-name={ds.resolve()}/libnvds_fbtool_contour.so" in elems[j - 1]
    assert names[j + 2] == "nvvideoconvert"
    # the blur takes the contour stage's masks (mask:own), not the one-model rule's whole box
    blur = next(e for e in elems if "libnvds_fbtool_dsblur.so" in e)
    assert "customlib-props=mask:own" in blur and "mask:box" not in blur
    assert info["sgie"]["warnings"] == []
