"""Issue 6: `fbtool run` chains every stage into one run folder, and is resumable."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toolchain import chain
from toolchain.cli import cli
from toolchain.errors import FbtoolError


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fullrun")
    r = CliRunner().invoke(cli, ["run", "-o", str(out)])
    return out, r


def test_run_completes_every_stage_that_can_run_here(full_run):
    out, r = full_run
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    ran = set(manifest["stages"])
    assert {"export", "surgery", "calibrate", "build-parser", "deepstream", "validate"} <= ran
    assert "build-engine: skipped:" in r.output  # no TensorRT here: skipped with the reason, not faked
    report = json.loads((out / "report.json").read_text())
    by = {c["name"]: c for c in report["candidates"]}
    for name in ("onnx", "surgered", "int8-qdq", "fp16", "nvinfer"):
        assert by[name]["status"] == "pass", (name, by[name])
    assert by["nvinfer"]["summary"]["mean_mask_iou"] >= 0.95
    # the main job judges the pixels DeepStream's blur app would write, as `fbtool validate` does
    pixels = by["nvinfer"]["pixels"]
    assert pixels["ok"] and pixels["frames"] > 0 and pixels["audit"]["faces_judged"] > 0, pixels["summary"]
    assert (out / "report.html").is_file()
    assert (out / "deepstream" / "config_infer_primary_retinaface_mnet025.txt").is_file()


def test_run_again_redoes_nothing(full_run):
    out, _ = full_run
    before = (out / "manifest.json").read_text()
    r = CliRunner().invoke(cli, ["run", "-o", str(out), "--to", "deepstream"])
    assert r.exit_code == 0, r.output
    for stage in ("export", "surgery", "calibrate", "build-parser", "deepstream"):
        assert f"{stage}: up to date, skipped" in r.output
    assert json.loads((out / "manifest.json").read_text())["stages"] == json.loads(before)["stages"]


def test_changed_upstream_artifact_reruns_downstream(full_run):
    """Touching the surgered ONNX makes surgery and the stages after it stale, not export."""
    from toolchain.recipe import load_recipe
    from toolchain.runfolder import RunFolder

    out, _ = full_run
    run, recipe = RunFolder(out), load_recipe()
    fp_before = chain.stage_fingerprint(run, recipe, "calibrate", {})
    assert run.is_fresh("calibrate", fp_before)
    onnx = run.artifact("surgery", "onnx")
    data = onnx.read_bytes()
    onnx.write_bytes(data + b"\0")
    try:
        assert not run.is_fresh("surgery", chain.stage_fingerprint(run, recipe, "surgery", {}))
        assert chain.stage_fingerprint(run, recipe, "calibrate", {}) != fp_before
        assert run.is_fresh("export", chain.stage_fingerprint(run, recipe, "export", {}))
    finally:
        onnx.write_bytes(data)


def test_stage_selection():
    assert chain.select("calibrate", "build-parser") == ["calibrate", "build-engine", "build-parser"]
    with pytest.raises(FbtoolError, match="unknown stage"):
        chain.select("expor", None)
    with pytest.raises(FbtoolError, match="comes after"):
        chain.select("validate", "export")


def test_every_recorded_artifact_is_in_the_table(full_run):
    """The run folder's contract is the typed table: a stage recording a file not declared there fails."""
    from toolchain.runfolder import ARTIFACTS

    out, _ = full_run
    declared = {a.ref for a in ARTIFACTS}
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = {(s, k) for s, e in manifest["stages"].items() for k in e["artifacts"]}
    assert recorded <= declared, recorded - declared
    readers = {r for a in ARTIFACTS for r in a.read_by}
    assert readers <= set(chain.STAGES) | {"blur"}


def test_chain_run_is_a_library_call(fresh_run, recipe):
    """chain.run runs a stage through its library function, marks it fresh, then skips it."""
    from toolchain.runfolder import INFER_CONFIG, RunFolder

    events = []
    steps = chain.run(recipe, fresh_run, chain.RunOptions(), "deepstream", "deepstream",
                      on_step=lambda e, s: events.append((e, s.stage)))
    assert [(s.stage, s.why) for s in steps] == [("deepstream", "ran")]
    assert events == [("start", "deepstream"), ("done", "deepstream")]
    assert steps[0].result["precision"] == "fp32" and RunFolder(fresh_run).get(INFER_CONFIG) is not None
    again = chain.run(recipe, fresh_run, chain.RunOptions(), "deepstream", "deepstream")
    assert [(s.stage, s.why) for s in again] == [("deepstream", "up to date")]
