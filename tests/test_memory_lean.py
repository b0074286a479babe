"""--memory-lean (toolchain/blur/pipeline/memory.py): the knobs that shrink the GPU path's memory must not
change what it detects, and must reach the pool, the graphs and the decoding threads. Here (no GPU) the
graphed stage runs its eager body on CPU tensors and PyAV stands in for NVDEC; the memory itself is
measured on the GPU machine (scripts/gpu_memory_lean.py, docs/bench.md)."""

from __future__ import annotations

import json

import pytest

GIFS = ["head-pose-face-detection-female-and-male.gif", "head-pose-face-detection-female-and-male.gif"]


def test_lean_plan_detects_exactly_what_the_default_does(recipe):
    """Two inputs through the NVDEC path's pipeline (PyAV on the CPU): the lean plan (letterbox 2 frames
    at a time, the BGR frames a graph intermediate, the lean pool, 16 decoding threads) and 1 graph slot
    give the default's faces, frame for frame, to the last digit."""
    from toolchain.blur.engines import make_engine
    from toolchain.blur.multistream import blur_streams
    from toolchain.blur.pipeline.memory import LEAN

    eng = make_engine(recipe, "torch", "cpu", batch=4, tensor_path=True)
    base = blur_streams(recipe, GIFS, None, eng, encode=False, max_frames=6, nvdec=False)
    assert base["faces"] >= 6 and base["inexact_frames"] == 0
    for plan in (LEAN.with_(frame_chunk=1), LEAN.with_(graph_slots=1, frame_chunk=3)):
        got = blur_streams(recipe, GIFS, None, eng, encode=False, max_frames=6, nvdec=False, plan=plan)
        assert got["rows"] == base["rows"], plan
        assert got["memory_plan"] == "lean" and got["decode_threads"] == 2  # 8 threads, capped at the inputs


def test_graph_runner_without_a_frame_buffer_keeps_it_when_frames_are_downloaded(recipe):
    from toolchain.blur.pipeline.graphs import GraphRunner
    from toolchain.models import build_model

    model = build_model(recipe).eval()
    lean = GraphRunner(model, recipe, 2, 64, 96, fmt="nv12", slots=2, download=False, keep_frames=False, chunk=1)
    assert [s.stage.frames for s in lean.slots] == [None, None] and lean.slots[0].stage.chunk == 1
    kept = GraphRunner(model, recipe, 2, 64, 96, fmt="nv12", slots=1, download=True, keep_frames=False)
    assert tuple(kept.slots[0].stage.frames.shape) == (2, 64, 96, 3)  # the blurred frames are read back


class _Dec:
    kind = "fbtool"
    width, height = 8, 4


def test_lean_pool_holds_two_batches_and_follows_the_decoding_threads():
    from toolchain.blur.pipeline.streams import StreamMux

    decs = [_Dec() for _ in range(32)]
    assert StreamMux(decs, 8).pool_size() == 3 * 8 + 3 * 32  # fbtool's default: a thread per stream
    assert StreamMux(decs, 8, threads=8, lean_pool=True).pool_size() == 2 * 8 + 3 * 8


def test_plan_checks_and_process_settings(monkeypatch):
    from toolchain.blur.pipeline.memory import LEAN, apply_process_settings, check
    from toolchain.errors import FbtoolError

    for bad in (LEAN.with_(graph_slots=0), LEAN.with_(frame_chunk=0), LEAN.with_(pool="tiny"),
                LEAN.with_(decode_threads=0)):
        with pytest.raises(FbtoolError):
            check(bad)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")
    apply_process_settings(LEAN)
    apply_process_settings(LEAN)
    import os

    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:64")
    apply_process_settings(LEAN)
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:64,expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:False")
    apply_process_settings(LEAN)  # the user's own choice stays
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:False"


def test_bench_streams_records_the_plan(recipe, tmp_path, monkeypatch):
    from toolchain.bench_streams import bench_streams, write_report
    from toolchain.blur.pipeline.memory import LEAN

    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")
    res = bench_streams(recipe, "classroom.gif", streams=(2,), frames_per_stream=3, batch=2, precision="fp32",
                        naive_frames=1, decoder="cpu", blur=False, plan=LEAN, log=lambda *_: None)
    paths = write_report(res, tmp_path, "s")
    data = json.loads(paths["json"].read_text())
    s = data["settings"]
    assert s["memory_plan"]["name"] == "lean" and s["graph_slots"] == LEAN.graph_slots
    assert s["env"]["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    run = data["runs"][0]
    assert run["frames"] == 6 and run["decode_threads"] == 2 and run["pool_frames"] == 2 * 2 + 1 * 2
    assert "memory plan lean" in paths["md"].read_text()


@pytest.mark.parametrize("args, needle", [
    (["bench", "--memory-lean"], "--memory-lean applies to --streams"),
    (["blur", GIFS[0], "-o", "x.mp4", "--memory-lean"], "--memory-lean applies to the NVDEC path only"),
    (["blur", GIFS[0], "-o", "x.mp4", "--memory-lean", "--device", "cuda", "--backend", "torch", "--decoder", "cpu"],
     "--memory-lean applies to the NVDEC path only"),
])
def test_cli_refuses_memory_lean_off_the_nvdec_path_in_one_line(tmp_path, monkeypatch, args, needle):
    from click.testing import CliRunner

    from toolchain.cli import cli

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and needle in res.output and "Traceback" not in res.output
    assert not list(tmp_path.iterdir())


def test_blur_pooling_in_chunks_is_exact():
    """The blur's block means, a few frames at a time (frame_chunk), equal the whole batch's to the bit."""
    import torch

    from toolchain.blur.ops.dense import _pool_base

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (5, 16, 24, 3), dtype=torch.uint8, generator=g)
    whole = _pool_base(frames, 4, torch.float32)
    for chunk in (1, 2, 3):
        assert torch.equal(_pool_base(frames, 4, torch.float32, chunk), whole)
