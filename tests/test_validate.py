"""Issue 6: validate compares every candidate with the PyTorch reference and points at breaks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import cli
from toolchain.runfolder import RunFolder

MEDIA = ["head-pose-face-detection-female-and-male.gif", "classroom.gif"]
ARGS = ["--frames-per-clip", "2", "--step", "10"] + [a for m in MEDIA for a in ("--media", m)]


def _plant(out: Path, model, name: str = "broken.onnx") -> None:
    """Register a modified model as the run folder's surgered ONNX (a candidate validate will pick up)."""
    import onnx

    onnx.save(model, str(out / name))
    RunFolder(out).record("surgery", {"onnx": out / name}, {"planted": True})


def test_validate_passes_and_writes_reports(fresh_run):
    out = fresh_run
    r = CliRunner().invoke(cli, ["validate", "-o", str(out)] + ARGS)
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    by = {c["name"]: c for c in report["candidates"]}
    assert by["onnx"]["status"] == "pass"
    assert by["onnx"]["summary"]["f1"] == 1.0
    assert by["onnx"]["tensors"]["loc"]["max_abs"] < 1e-3
    # what cannot run here is listed with its reason, not silently dropped
    assert by["engine"]["status"] == "skipped" and by["engine"]["reason"]
    assert report["reference"]["faces"] >= 8
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "PASS" in html
    assert RunFolder(out).stage("validate")["info"]["passed"] is True


def test_wrong_mean_in_candidate_preprocessing_fails_validate(fresh_run, onnx_path):
    import onnx

    from toolchain.onnx_meta import get_metadata, set_metadata

    out = fresh_run
    m = onnx.load(str(onnx_path))
    pre = get_metadata(m)["preprocess"]
    set_metadata(m, {"preprocess": dict(pre, scale=1 / 255.0)})  # a classic: normalising to [0, 1]
    _plant(out, m)
    r = CliRunner().invoke(cli, ["validate", "-o", str(out), "--candidate", "surgered"] + ARGS)
    assert r.exit_code == 2, r.output
    err = r.output.strip().splitlines()[-1]
    assert "candidate 'surgered'" in err and "f1" in err and "worst frame" in err and ".gif#" in err


def test_swapped_output_names_fail_validate(fresh_run, onnx_path):
    import onnx

    out = fresh_run
    m = onnx.load(str(onnx_path))
    rename = {"loc": "landmarks", "landmarks": "loc"}
    for node in m.graph.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
    for o in m.graph.output:
        o.name = rename.get(o.name, o.name)
    _plant(out, m)
    r = CliRunner().invoke(cli, ["validate", "-o", str(out), "--candidate", "surgered"] + ARGS)
    assert r.exit_code == 2, r.output
    assert "candidate 'surgered'" in r.output and "swapped" in r.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(fresh_run, tmp_path):
    import cv2

    out = fresh_run
    assert CliRunner().invoke(cli, ["validate", "-o", str(out)] + ARGS).exit_code == 0
    png = tmp_path / "shot.png"
    script = Path(__file__).resolve().parent.parent / "scripts" / "screenshot_report.sh"
    subprocess.run(["bash", str(script), str(out / "report.html"), str(png), "1000", "1400"], check=True,
                   timeout=120)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[:2] == (1400, 1000)
    # the overlays draw green (reference) boxes: the rendered page holds pure-ish green pixels
    green = (img[:, :, 1] > 150) & (img[:, :, 0] < 80) & (img[:, :, 2] < 80)
    assert green.sum() > 50
    assert float(np.std(img)) > 20  # not a blank page
