"""fbtool blur: the pipeline blurs (pixel proof), fails cleanly, and its torch post-processing is the reference's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from toolchain.errors import FbtoolError

MP4 = "one-by-one-person-detection.mp4"
MP4_FACES_AT = 1345  # the clip shows faces late (frames ~1340-1360 hold one)


@pytest.fixture(scope="module")
def host_engine(recipe):
    from toolchain.blur.engines import make_engine

    return make_engine(recipe, "torch", "cpu", batch=2)


@pytest.fixture(scope="module")
def tensor_engine(recipe):
    from toolchain.blur.engines import make_engine

    return make_engine(recipe, "torch", "cpu", tensor_path=True, batch=2)


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name]


# ----------------------------------------------------------------------------- the proof

@pytest.mark.parametrize("clip,start", [("classroom.gif", 0), ("head-pose-face-detection-female-and-male.gif", 0),
                                        (MP4, MP4_FACES_AT)])
def test_blur_proof_on_shared_clips(recipe, host_engine, tmp_path, clip, start):
    from toolchain.blur.app import blur_video

    out = tmp_path / "blurred.mp4"
    info = blur_video(recipe, clip, out, host_engine, json_path=tmp_path / "d.jsonl", start=start, max_frames=5,
                      progress=False, verify=True)
    proof = info["proof"]
    assert proof["ok"], proof["failures"]
    assert proof["frames"] == 5 and proof["faces_judged"] >= 5  # faces were there to judge
    assert proof["worst_detail_drop"] >= 0.9 and proof["psnr_min_db"] >= 30
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == 5 and info["faces"] >= 5


def test_proof_fails_on_an_unblurred_copy(recipe):
    from toolchain.blur.proof import verify_frames
    from toolchain.media import read_frames

    frames = read_frames("classroom.gif", max_frames=2)
    report = verify_frames(recipe, frames, [f.copy() for f in frames])
    assert not report.ok and report.worst_drop is not None and report.worst_drop < 0.1
    # ... and fails on a frame damaged away from faces
    bad = [f.copy() for f in frames]
    bad[0][:100, :300] = 255 - bad[0][:100, :300]  # far from the faces (they sit below row 120)
    from toolchain.blur.ops.cpu import blur_faces
    from toolchain.detector import detect_batch
    from toolchain.runners import TorchRunner

    d = detect_batch([frames[0]], recipe, TorchRunner(recipe))[0]
    bad[0] = blur_faces(bad[0], d.boxes, d.landmarks)
    assert verify_frames(recipe, frames[:1], bad[:1]).psnr_min < 30


# ----------------------------------------------------------------------------- errors, no partial output

def test_truncated_video_gives_clear_error_and_no_output(recipe, host_engine, tmp_path):
    from toolchain.blur.app import blur_video
    from toolchain.media import resolve_media

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(resolve_media(MP4).read_bytes()[:150_000])
    out = tmp_path / "out" / "blurred.mp4"
    with pytest.raises(FbtoolError) as exc:
        blur_video(recipe, cut, out, host_engine, progress=False)
    assert "cut.mp4" in str(exc.value)
    assert not out.exists() and _no_temp_files(out.parent) == []


def test_unreadable_video_gives_clear_error(recipe, host_engine, tmp_path):
    from toolchain.blur.app import blur_video

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "blurred.mp4"
    with pytest.raises(FbtoolError, match="junk.mp4"):
        blur_video(recipe, junk, out, host_engine, progress=False)
    assert not out.exists()


# ----------------------------------------------------------------------------- clean shutdown

def _fbtool_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fbtool-")]


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_pipeline_propagates_first_error_and_stops_every_stage(where):
    from toolchain.blur.pipeline.core import Pipeline, Stage

    class Boom(RuntimeError):
        pass

    def source(_):
        for i in range(10_000):  # would run ~forever if the pipeline did not stop it
            if where == "first" and i == 3:
                raise Boom("source")
            yield i

    def mid(items):
        for i in items:
            if where == "middle" and i == 5:
                raise Boom("middle")
            time.sleep(0.001)
            yield i

    def sink(items):
        for i in items:
            if where == "last" and i == 7:
                raise Boom("sink")
            yield i

    t0 = time.perf_counter()
    with pytest.raises(Boom):
        Pipeline([Stage("a", source), Stage("b", mid), Stage("c", sink)], maxsize=2).run()
    assert time.perf_counter() - t0 < 5
    assert _fbtool_threads() == []


def test_failing_blur_stage_leaves_no_partial_output(recipe, host_engine, tmp_path, monkeypatch):
    from toolchain.blur.app import blur_video
    from toolchain.blur.pipeline import stages

    def failing_blur(recipe):
        def fn(batches):
            for n, b in enumerate(batches):
                if n == 1:  # after one batch was already encoded
                    raise RuntimeError("injected blur failure")
                yield b
        return fn

    monkeypatch.setattr(stages, "host_blur", failing_blur)
    out = tmp_path / "blurred.mp4"
    with pytest.raises(RuntimeError, match="injected"):
        blur_video(recipe, "classroom.gif", out, host_engine, json_path=tmp_path / "d.jsonl", progress=False)
    assert not out.exists() and not (tmp_path / "d.jsonl").exists()
    assert _no_temp_files(tmp_path) == [] and _fbtool_threads() == []


def test_failing_encoder_leaves_no_partial_output(recipe, host_engine, tmp_path, monkeypatch):
    from toolchain.blur import writer
    from toolchain.blur.app import blur_video

    calls = {"n": 0}
    real = writer.BlurWriter.write

    def write(self, frame):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full (injected)")
        real(self, frame)

    monkeypatch.setattr(writer.BlurWriter, "write", write)
    out = tmp_path / "blurred.mp4"
    with pytest.raises(OSError, match="injected"):
        blur_video(recipe, "classroom.gif", out, host_engine, progress=False)
    assert not out.exists() and _no_temp_files(tmp_path) == [] and _fbtool_threads() == []


# ----------------------------------------------------------------------------- the torch (GPU) path, on CPU

@pytest.fixture(scope="module")
def raw_batch(recipe, torch_runner):
    from toolchain.media import read_frames
    from toolchain.reference.preprocess import preprocess_batch

    frames = (read_frames("classroom.gif", max_frames=2) + read_frames("head-pose-face-detection-female-and-male.gif",
                                                                       max_frames=2)
              + read_frames("people-detection.gif", max_frames=1))  # a frame with no face
    x, lbs = preprocess_batch(frames, recipe)
    return frames, x, lbs, torch_runner.infer({recipe.input.name: x})


@pytest.mark.parametrize("threshold", [None, 0.02])
def test_torch_postprocess_matches_reference(recipe, raw_batch, threshold):
    import torch

    from toolchain.reference.detections import postprocess, split_batch
    from toolchain.reference.preprocess import to_frame
    from toolchain.reference.torch_port import anchors_torch, postprocess_torch, to_frame_torch

    frames, _, lbs, out = raw_batch
    td = postprocess_torch({k: torch.from_numpy(v) for k, v in out.items()}, recipe, anchors_torch(recipe, "cpu"),
                           score_threshold=threshold)
    mine = to_frame_torch(td, lbs[0]).to_numpy()
    refs = [to_frame(postprocess(o, recipe, score_threshold=threshold), lb) for o, lb in zip(split_batch(out), lbs)]
    assert sum(len(r) for r in refs) >= 12
    for m, r in zip(mine, refs):
        assert len(m) == len(r)  # the same faces, in the same order (best first)
        if len(r):
            assert np.abs(m.boxes - r.boxes).max() < 0.01
            assert np.abs(m.landmarks - r.landmarks).max() < 0.01
            assert np.array_equal(m.scores, r.scores)


def test_torch_letterbox_matches_preprocess(recipe, raw_batch):
    import torch

    from toolchain.reference.torch_port import letterbox_torch

    frames, x, lbs, _ = raw_batch
    xt, lb = letterbox_torch(torch.from_numpy(np.stack(frames)), recipe)
    assert lb == lbs[0]
    assert np.abs(xt.numpy() - x).max() < 1.0  # bilinear in float vs OpenCV's fixed point, same geometry


def test_torch_blur_matches_cpu_blur(recipe, raw_batch):
    import torch

    from toolchain.blur.ops.cpu import blur_faces
    from toolchain.blur.ops.torch import blur_batch
    from toolchain.blur.proof import verify_frames
    from toolchain.reference.torch_port import anchors_torch, postprocess_torch, to_frame_torch

    frames, _, lbs, out = raw_batch
    td = to_frame_torch(postprocess_torch({k: torch.from_numpy(v) for k, v in out.items()}, recipe,
                                          anchors_torch(recipe, "cpu")), lbs[0])
    t = torch.from_numpy(np.stack(frames)).clone()
    assert blur_batch(t, td) >= 12
    for f, got, d in zip(frames, t.numpy(), td.to_numpy()):
        want = blur_faces(f, d.boxes, d.landmarks)
        assert np.abs(got.astype(int) - want).max() <= 1
    assert verify_frames(recipe, frames, list(t.numpy())).ok


def test_tensor_engine_pipeline_blurs(recipe, tensor_engine, tmp_path):
    """The CUDA engine's stages (upload, infer, post, blur, download), run on CPU tensors."""
    from toolchain.blur.app import blur_video

    for fuse in (True, False):
        import toolchain.blur.app as job

        info = job.run_frames(tensor_engine, recipe, ((i, f) for i, f in _frames(4)), keep=(kept := []),
                              results=[], fuse_gpu=fuse)
        assert info["frames"] == 4 and len(kept) == 4
    info = blur_video(recipe, "classroom.gif", tmp_path / "b.mp4", tensor_engine, max_frames=4, progress=False,
                      verify=True)
    assert info["proof"]["ok"] and info["proof"]["faces_judged"] >= 4


def _frames(n):
    from toolchain.media import iter_frames

    return list(iter_frames("classroom.gif", max_frames=n))


# ----------------------------------------------------------------------------- CLI

def test_cli_blur_end_to_end(tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import cli

    out = tmp_path / "b.mp4"
    res = CliRunner().invoke(cli, ["blur", "head-pose-face-detection-female.gif", "-o", str(out), "--backend", "torch",
                                   "--max-frames", "3", "--verify", "--stats", "--json", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 0, res.output
    assert "audit: PASS" in res.output and "blur: done" in res.output and out.stat().st_size > 1000


@pytest.mark.parametrize("backend,needle", [("tensorrt", "tensorrt"), ("nvinfer", "deepstream")])
def test_cli_blur_unavailable_backend_is_a_clear_error(tmp_path, backend, needle):
    from click.testing import CliRunner

    from toolchain.cli import cli

    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        if backend == "tensorrt":
            pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    res = CliRunner().invoke(cli, ["blur", "classroom.gif", "-o", str(tmp_path / "b.mp4"), "--backend", backend,
                                   "--run", str(tmp_path / "run")])
    if res.exit_code == 0:
        pytest.skip(f"the {backend} backend is available in this checkout")
    # tensorrt: not importable here; nvinfer: the emulation exists but the run folder has no emitted config
    assert res.exit_code == 2 and needle in res.output.lower() and "Traceback" not in res.output
    assert not (tmp_path / "b.mp4").exists()


def test_nvinfer_backend_blurs_through_the_emitted_config(fresh_run, tmp_path):
    """The nvinfer emulation (the emitted DeepStream config, nvinfer's scaling and clustering) as the
    infer stage, with the compiled parser (never a stand-in: docs/hardening.md case 12)."""
    from click.testing import CliRunner

    from toolchain.cli import cli

    run = fresh_run
    res = CliRunner().invoke(cli, ["build-parser", "-o", str(run)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["deepstream", "-o", str(run), "--ds-dir", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "nv.mp4"
    res = CliRunner().invoke(cli, ["blur", "classroom.gif", "-o", str(out), "--backend", "nvinfer", "--run", str(run),
                                   "--max-frames", "4", "--verify"])
    assert res.exit_code == 0, res.output
    assert "nvinfer-emulation" in res.output and "audit: PASS" in res.output and out.is_file()


def test_pipeline_back_pressure_loses_and_reorders_nothing():
    """A sink slower than the poll interval keeps the source blocked on a full queue for many polls
    (the put is retried) and the sink waiting on an empty one: every item arrives, once, in order,
    and the waits are counted where they happened."""
    import time

    from toolchain.blur.pipeline.core import _POLL_S, Pipeline, Stage

    got = []

    def source(_):
        yield from range(6)

    def sink(items):
        for x in items:
            time.sleep(2 * _POLL_S)
            got.append(x)
        return ()

    stats = Pipeline([Stage("src", source), Stage("sink", sink)], maxsize=1).run()
    assert got == list(range(6))
    assert stats[0].wait_out_s > 2 * _POLL_S  # the source was blocked by the slow sink
