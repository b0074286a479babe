"""Hardening (issue 17, docs/hardening.md): the cases that need the exported model or real frames."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import cli
from toolchain.errors import FbtoolError

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(res, needle: str | None = None, code: int = 2) -> str:
    assert res.exit_code == code and "Traceback" not in res.output, res.output
    err = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(err) == 1, res.output
    if needle is not None:
        assert needle.lower() in err[0].lower(), err[0]
    return err[0]


def sha(p: Path) -> str:
    from toolchain.fsutil import sha256_file

    return sha256_file(p)


@pytest.fixture
def video(tmp_path):
    p = tmp_path / "in.gif"
    shutil.copy(SHARED / "media" / "classroom.gif", p)
    return p


def _gif(path: Path, w: int, h: int, frames: int = 2, value: int = 128) -> Path:
    from PIL import Image

    imgs = [Image.fromarray(np.full((h, w, 3), value, np.uint8)) for _ in range(frames)]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=40, loop=0)
    return path


# ---- 1: no output overwrites an input ---------------------------------------------------------------

def test_blur_json_may_not_overwrite_the_input_or_the_video(video, tmp_path, onnx_path):
    before = sha(video)
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--json", video, "--onnx", onnx_path),
                   "would overwrite the input")
    assert sha(video) == before and not (tmp_path / "o.mp4").exists()
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--json", tmp_path / "o.mp4", "--onnx", onnx_path),
                   "same file")
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--json", onnx_path, "--onnx", onnx_path),
                   "would overwrite the input --onnx")
    assert not (tmp_path / "o.mp4").exists()


def test_detect_outputs_may_not_overwrite_the_input(video, tmp_path, onnx_path):
    before = sha(video)
    one_line_error(invoke("detect", video, "-o", video, "--onnx", onnx_path), "would overwrite the input")
    one_line_error(invoke("detect", video, "-o", tmp_path / "d.mp4", "--json", video, "--onnx", onnx_path),
                   "would overwrite the input")
    one_line_error(invoke("detect", video, "-o", tmp_path / "d.mp4", "--json", tmp_path / "d.mp4", "--onnx",
                          onnx_path), "same file")
    assert sha(video) == before and not (tmp_path / "d.mp4").exists()


def test_surgery_name_may_not_replace_the_export(fresh_run):
    before = sha(fresh_run / "model.onnx")
    one_line_error(invoke("surgery", "-o", fresh_run, "--name", "model.onnx", "--no-check"), "destroy an input")
    one_line_error(invoke("surgery", "-o", fresh_run, "--name", "../x.onnx", "--no-check"), "leaves the run folder")
    assert sha(fresh_run / "model.onnx") == before


# ---- 4, 7, 20: calibrate ----------------------------------------------------------------------------

def test_failed_int8_gate_deploys_nothing_and_model_optimizer_never_touches_the_run_folder(fresh_run, tmp_path):
    """A recipe with an unreachable INT8 limit: the gate fails; neither the Q/DQ model nor its cache
    stays recorded (so DeepStream 8.0 INT8 is refused), and Model Optimizer's by-products and its
    in-place rewrite of its input never reach the run folder."""
    import yaml

    from toolchain.recipe import load_recipe

    d = json.loads(json.dumps(load_recipe().to_dict()))
    d["tolerances"]["int8_mean_iou"] = 1.0
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(d))
    model = fresh_run / "model.onnx"
    before = sha(model)
    res = invoke("calibrate", "--recipe", strict, "-o", fresh_run, "--method", "max", "--no-fp16", "--frames", "8",
                 "--eval-frames", "4")
    one_line_error(res, "accuracy gate failed")
    assert sha(model) == before
    stage = json.loads((fresh_run / "manifest.json").read_text())["stages"]["calibrate"]
    assert "int8_qdq" not in stage["artifacts"] and "calib_cache" not in stage["artifacts"], stage["artifacts"]
    assert not list((fresh_run / "calib").glob("*.cache"))
    top = sorted(p.name for p in fresh_run.iterdir())
    assert top == ["calib", "manifest.json", "model.onnx"], top  # no _named/_opset19/_reconciled, no parts
    one_line_error(invoke("deepstream", "-o", fresh_run, "--precision", "int8", "--deepstream", "8.0",
                          "--ds-dir", tmp_path / "ds"), "calibration cache")


def test_model_optimizer_gets_a_private_copy(tmp_path, onnx_path, monkeypatch):
    """Whatever the third-party tool does to the file it is given (here: truncates it, drops files
    beside it), the caller's model is untouched."""
    import modelopt.onnx.quantization as mq

    from toolchain.calibrate.qdq import quantize_int8

    run = tmp_path / "R"
    run.mkdir()
    model = run / "model.onnx"
    shutil.copy(onnx_path, model)
    before = sha(model)
    seen = {}

    def hostile(path, **kw):
        seen["path"] = path
        Path(path).write_bytes(b"")
        Path(path).with_name("model_named.onnx").write_bytes(b"x")
        raise RuntimeError("tool failed")

    monkeypatch.setattr(mq, "quantize", hostile)
    cache = run / "c.cache"
    cache.write_text("TRT-100300-MinMaxCalibration\n")
    with pytest.raises(FbtoolError, match="Model Optimizer"):
        quantize_int8(model, np.zeros((1, 3, 8, 8), np.float32), "max", cache, run / "q.onnx")
    assert Path(seen["path"]).resolve().parent != run.resolve()
    assert sha(model) == before and sorted(p.name for p in run.iterdir()) == ["c.cache", "model.onnx"]
    assert not Path(seen["path"]).exists()  # the private folder is gone too


# ---- 8: zero reference faces ------------------------------------------------------------------------

def test_no_face_in_the_validation_media_is_an_error_not_a_pass(fresh_run, tmp_path, recipe, onnx_path):
    blank = _gif(tmp_path / "blank.gif", 64, 64, frames=3)
    one_line_error(invoke("validate", "-o", fresh_run, "--media", blank, "--frames-per-clip", "2", "--step", "1"),
                   "no face in the validation media")
    assert not (fresh_run / "report.json").exists() and "validate" not in json.loads(
        (fresh_run / "manifest.json").read_text())["stages"]
    from toolchain.calibrate.gate import accuracy_gate
    from toolchain.media import read_frames

    with pytest.raises(FbtoolError, match="no face in the validation media"):
        accuracy_gate(recipe, onnx_path, read_frames(blank), "int8")


def test_calibrate_on_faceless_media_is_refused(fresh_run, tmp_path):
    tiny = _gif(tmp_path / "tiny.gif", 1, 1, frames=4)
    blank = _gif(tmp_path / "blank.gif", 64, 64, frames=4, value=90)
    before = sha(fresh_run / "model.onnx")
    one_line_error(invoke("calibrate", "-o", fresh_run, "--source", tiny, "--eval-source", blank, "--no-fp16",
                          "--frames", "4", "--eval-frames", "4"), "no face in the validation media")
    assert sha(fresh_run / "model.onnx") == before
    assert not list(fresh_run.glob("*int8*")) and not list(fresh_run.glob("calib/*.cache"))  # no product left


# ---- 12: the nvinfer backend needs the real parser --------------------------------------------------

def test_nvinfer_blur_never_falls_back_to_the_python_parser(fresh_run, video, tmp_path):
    assert invoke("deepstream", "-o", fresh_run, "--ds-dir", tmp_path / "ds").exit_code == 0  # no parser built
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--backend", "nvinfer", "--run", fresh_run,
                          "--max-frames", "2"), "cannot load the config's parser")
    assert not (tmp_path / "o.mp4").exists()


# ---- 3: names cannot leave --ds-dir; deployment outputs overwrite no input --------------------------

def test_deepstream_outputs_stay_in_their_folder(fresh_run, tmp_path, recipe):
    import dataclasses

    from toolchain.deepstream import emit

    with pytest.raises(FbtoolError, match="leave the DeepStream folder"):
        emit(dataclasses.replace(recipe, name="../../../../escaped"), fresh_run, ds_dir=tmp_path / "ds")
    assert not list(tmp_path.rglob("*escaped*"))
    with pytest.raises(FbtoolError, match="would overwrite the input"):
        _collide(fresh_run, recipe)
    assert (fresh_run / "labels.txt").read_bytes() == b"\x7fELF"


def _collide(run: Path, recipe):
    """An input named like an output: the parser library recorded as labels.txt's path."""
    from toolchain.deepstream import emit
    from toolchain.runfolder import RunFolder

    lib = run / "labels.txt"
    lib.write_bytes(b"\x7fELF")
    RunFolder(run).record("build-parser", {"lib": lib}, {"symbols": [], "ds_major": 9})
    emit(recipe, run, ds_dir=run)


# ---- 13, 21: corrupt or empty ONNX in a run folder --------------------------------------------------

@pytest.mark.parametrize("cmd", [["surgery", "--no-check"], ["calibrate", "--no-fp16"], ["deepstream"],
                                 ["build-parser"], ["validate"]])
@pytest.mark.parametrize("size", [0, 900000])
def test_truncated_run_folder_onnx_is_one_line(fresh_run, tmp_path, cmd, size):
    os.truncate(fresh_run / "model.onnx", size)
    extra = ["--ds-dir", tmp_path / "ds"] if cmd[0] == "deepstream" else []
    needle = "empty (0 bytes)" if size == 0 else "differs from the manifest"
    one_line_error(invoke(*cmd, "-o", fresh_run, *extra), needle)


def test_truncated_onnx_in_blur_and_detect_is_one_line(fresh_run, video, tmp_path):
    os.truncate(fresh_run / "model.onnx", 900000)
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--run", fresh_run), "differs from the manifest")
    bad = tmp_path / "bad.onnx"
    shutil.copy(fresh_run / "model.onnx", bad)
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--onnx", bad))
    assert not (tmp_path / "o.mp4").exists()


# ---- 16, 22, 23, 25: blur inputs and outputs --------------------------------------------------------

def test_one_pixel_gif_is_one_line(tmp_path, onnx_path):
    gif = _gif(tmp_path / "px.gif", 1, 1)
    one_line_error(invoke("blur", gif, "-o", tmp_path / "o.mp4", "--onnx", onnx_path), "too small")
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*part*"))


def test_mp4_without_video_is_one_line(tmp_path, onnx_path):
    import av

    p = tmp_path / "audio.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    one_line_error(invoke("blur", p, "-o", tmp_path / "o.mp4", "--onnx", onnx_path), "no video stream")


@pytest.mark.parametrize("opt", [["--max-frames", "0"], ["--max-frames", "-3"], ["--start", "-5"]])
def test_frame_range_options_are_checked(video, tmp_path, onnx_path, opt):
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--onnx", onnx_path, *opt))
    assert not (tmp_path / "o.mp4").exists()


def test_blur_output_that_is_a_folder_is_one_line(video, tmp_path, onnx_path):
    (tmp_path / "o.mp4").mkdir()
    one_line_error(invoke("blur", video, "-o", tmp_path / "o.mp4", "--onnx", onnx_path), "is a folder")


def test_failed_json_write_leaves_no_video(video, tmp_path, onnx_path, monkeypatch):
    from toolchain.blur import app as job

    real = Path.write_text

    def full_disk(self, *a, **kw):
        if ".part" in self.name and self.name.startswith(".d.jsonl"):
            import errno

            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(job.Path, "write_text", full_disk)
    out = tmp_path / "o.mp4"
    one_line_error(invoke("blur", video, "-o", out, "--json", tmp_path / "d.jsonl", "--onnx", onnx_path,
                          "--max-frames", "2"), "disk is full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.gif"]
    # The JSON's folder is a file: refused before any work.
    (tmp_path / "F").write_text("x")
    one_line_error(invoke("blur", video, "-o", out, "--json", tmp_path / "F" / "d.jsonl", "--onnx", onnx_path))
    assert not out.exists()


def test_blur_sweeps_part_files_of_a_killed_run(video, tmp_path, onnx_path):
    dead = 2 ** 22 + 4242
    stale = tmp_path / f".o.mp4.{dead}.abcd1234.part.mp4"
    stale.write_bytes(b"x" * 100)
    other = tmp_path / f".other.mp4.{dead}.abcd1234.part.mp4"  # another output's: not ours to judge
    other.write_bytes(b"x")
    res = invoke("blur", video, "-o", tmp_path / "o.mp4", "--onnx", onnx_path, "--max-frames", "2")
    assert res.exit_code == 0, res.output
    assert not stale.exists() and other.exists()


def test_sigterm_during_blur_leaves_no_part_file(tmp_path, onnx_path):
    """SIGTERM (timeout, docker stop) while the video is being written: exit 143, no part file."""
    src = SHARED / "media" / "one-by-one-person-detection.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", "import sys; from toolchain.cli import main; main(sys.argv[1:])",
                          "blur", str(src), "-o", str(tmp_path / "o.mp4"), "--onnx", str(onnx_path)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not list(tmp_path.glob(".o.mp4.*part*")):
        assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 143, (out, err[-2000:])
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
