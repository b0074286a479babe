"""`fbtool build-engine` from the command line: dry runs (no TensorRT needed), refusals, and the
one-line error with a hint where TensorRT is missing, leaving the run folder untouched."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from click.testing import CliRunner

from toolchain.cli import cli
from toolchain.runfolder import RunFolder

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture()
def run(exported, tmp_path):
    shutil.copy(exported[0] / "model.onnx", tmp_path / "model.onnx")
    (tmp_path / "model_fp16.onnx").write_bytes((tmp_path / "model.onnx").read_bytes())  # stands in for AutoCast
    rf = RunFolder(tmp_path)
    rf.record("export", {"onnx": tmp_path / "model.onnx"})
    rf.record("calibrate", {"fp16": tmp_path / "model_fp16.onnx"})
    return tmp_path


def _invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the missing-TensorRT path cannot be shown")
def test_missing_tensorrt_is_one_line_with_hint_and_writes_nothing(run):
    before = _snapshot(run)
    r = _invoke("build-engine", "-o", str(run), "--precision", "fp16")
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: tensorrt is not available")
    assert "(hint: " in lines[0] and "fbtool doctor" in lines[0]
    assert _snapshot(run) == before


def test_dry_run_prints_the_decisions_without_tensorrt(run, recipe):
    before = _snapshot(run)
    r = _invoke("build-engine", "-o", str(run), "--precision", "fp16", "--trt-major", "10", "--fp16-mode", "flag",
                "--dry-run")
    assert r.exit_code == 0, r.output
    assert "fp16 -> fp16 via fp16-flag (strongly typed: False, flags: FP16)" in r.output
    assert f"model.onnx_b{recipe.input.batch.max}_gpu0_fp16.engine" in r.output
    assert f"max [{recipe.input.batch.max}, 3, 384, 640]" in r.output
    r = _invoke("build-engine", "-o", str(run), "--precision", "fp16", "--trt-major", "11", "--dry-run")
    assert "fp16-autocast (strongly typed: True, flags: none)" in r.output and "model_fp16.onnx_b" in r.output
    assert _snapshot(run) == before


def test_trt11_refuses_implicit_int8(run):
    r = _invoke("build-engine", "-o", str(run), "--precision", "int8", "--int8-mode", "implicit", "--trt-major",
                "11", "--dry-run")
    assert r.exit_code == 2
    assert "TensorRT 11 has no implicit INT8 calibration" in r.output and "--int8-mode qdq" in r.output


def test_int8_without_calibration_says_run_calibrate(run):
    r = _invoke("build-engine", "-o", str(run), "--precision", "int8", "--trt-major", "10", "--dry-run")
    assert r.exit_code == 2 and "run `fbtool calibrate`" in r.output


def test_not_a_run_folder(tmp_path):
    r = _invoke("build-engine", "-o", str(tmp_path / "nothing"), "--trt-major", "10", "--dry-run")
    assert r.exit_code == 2 and "not a run folder" in r.output
    assert not (tmp_path / "nothing").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt-rtx is not installed")
def test_cli_builds_with_tensorrt_rtx(run, recipe):
    r = _invoke("build-engine", "-o", str(run), "--precision", "fp32", "--runtime", "tensorrt-rtx")
    assert r.exit_code == 0, r.output
    engine = run / f"model.onnx_b{recipe.input.batch.max}_rtx-sm86_fp32.engine"
    assert engine.is_file() and (run / (engine.name + ".json")).is_file()
    assert "build-engine: done in" in r.output and engine.name in r.output
