"""`fbtool doctor`: real probes of this machine, stage requirements and the --require exit code."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from toolchain.cli import cli
from toolchain.doctor import Check, all_stages, diagnose, stage_status
from toolchain.errors import FbtoolError

STAGES = all_stages()


@pytest.fixture(scope="module")
def checks():
    return diagnose()


def test_diagnose_reports_the_real_machine(checks):
    by = {c.name: c for c in checks}
    for name in ("python", "torch", "torch-cuda", "onnxruntime", "modelopt", "tensorrt", "tensorrt-lean",
                 "tensorrt-rtx", "gpu", "deepstream", "deepstream-headers", "gstreamer", "g++", "clang", "libfuzzer"):
        assert name in by, name
        assert by[name].detail, name  # every line says a version or why not
    assert by["python"].ok and by["onnxruntime"].ok and "CPUExecutionProvider" in by["onnxruntime"].detail
    assert by["tensorrt"].ok == (importlib.util.find_spec("tensorrt") is not None)
    assert by["tensorrt-rtx"].ok == (importlib.util.find_spec("tensorrt_rtx") is not None)
    if not by["tensorrt"].ok:
        assert "does not import" in by["tensorrt"].detail


def test_stage_status_alternatives():
    fake = [Check("tensorrt", False, "x"), Check("gpu", False, "x"), Check("tensorrt-rtx", True, "1.7")]
    ok, why = stage_status("build-engine-rtx", fake)
    assert ok and "tensorrt-rtx" in why
    ok, why = stage_status("build-engine-tensorrt", fake)
    assert not ok and why == "missing tensorrt + gpu"
    ok, why = stage_status("deepstream-app", fake)
    assert not ok and "deepstream" in why
    with pytest.raises(FbtoolError, match="no stage"):
        stage_status("nope", fake)


def test_doctor_says_what_run_does_in_runs_words(tmp_path, recipe):
    """One story: doctor's verdict on each of run's stages is what `fbtool run` then does, word for word."""
    from toolchain import chain

    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    for stage in chain.STAGES:
        ok, why = chain.can_run(stage)
        mark = "ok  " if ok else "no  "
        assert any(ln.startswith(mark + stage + " ") and ln.endswith("  " + why) for ln in lines), stage
    # the deepstream stage writes configs here: doctor must not call it impossible while run does it
    assert chain.can_run("deepstream")[0]
    ok, why = chain.can_run("build-engine")
    if not ok:  # no TensorRT here: run prints exactly doctor's words, with the way to make it run
        assert "--engine-runtime tensorrt-rtx" in why or "TensorRT" in why
        steps = chain.run(recipe, tmp_path / "R", start="build-engine", stop="build-engine")
        assert steps[0].why == why


def test_cli_table_and_require_exit_code(checks):
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 0 and "build-engine" in r.output and "tensorrt-rtx" in r.output
    can = [s for s in STAGES if stage_status(s, checks)[0]]
    cannot = [s for s in STAGES if not stage_status(s, checks)[0]]
    if can:
        assert CliRunner().invoke(cli, ["doctor", "--require", ",".join(can)]).exit_code == 0
    if cannot:
        r = CliRunner().invoke(cli, ["doctor", "--require", can[0] if can else cannot[0], cannot[0]])
        assert r.exit_code == 1 and f"cannot run here: {cannot[0]}" in r.output
    r = CliRunner().invoke(cli, ["doctor", "--require", "nope"])
    assert r.exit_code == 2 and "knows no stage" in r.output


def test_cli_json():
    r = CliRunner().invoke(cli, ["doctor", "--json"])
    data = json.loads(r.output)
    assert set(data["stages"]) == set(STAGES) and any(c["name"] == "tensorrt" for c in data["checks"])
