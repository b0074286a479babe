"""Many streams through one GPU stage (toolchain/blur/pipeline/streams.py, blur/multistream.py,
toolchain/bench_streams.py), exercised on the CPU: PyAV decoders stand in for NVDEC and the graphed
stage runs its eager body on CPU tensors."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest


class _FakeDecoder:
    """n frames of a constant value (the stream id), optionally slow."""

    def __init__(self, sid: int, n: int, delay: float = 0.0):
        self.sid, self.n, self.delay = sid, n, delay
        self.width, self.height = 8, 4

    def frames(self, max_frames=None, sync=False):
        import torch

        for i in range(self.n if max_frames is None else min(self.n, max_frames)):
            if self.delay:
                time.sleep(self.delay)
            yield i, torch.full((6, 8), self.sid, dtype=torch.uint8), None


def test_mux_fills_batches_from_whichever_streams_have_frames():
    from toolchain.blur.pipeline.streams import StreamMux

    decs = [_FakeDecoder(0, 7), _FakeDecoder(1, 5), _FakeDecoder(2, 3, delay=0.05)]
    mux = StreamMux(decs, batch=4, timeout_s=0.01)
    got: dict = {}
    sizes = []
    mixed = 0
    for b in mux.batches():
        sizes.append(len(b))
        mixed += len({it[0] for it in b}) > 1
        for sid, idx, frame, *_ in b:
            assert int(frame[0, 0]) == sid
            got.setdefault(sid, []).append(idx)
    assert got == {0: list(range(7)), 1: list(range(5)), 2: list(range(3))}  # every frame once, in order
    assert max(sizes) == 4 and sum(sizes) == 15
    assert mixed >= 1  # a batch takes frames of several streams
    assert mux.stats.timeouts >= 1  # the slow stream's frames left in partial batches (batch timeout)


def test_mux_reports_a_decoder_error_and_stops():
    from toolchain.blur.pipeline.streams import StreamMux

    class Broken(_FakeDecoder):
        def frames(self, max_frames=None, sync=False):
            yield from super().frames(2)
            raise RuntimeError("corrupt packet")

    mux = StreamMux([_FakeDecoder(0, 100, delay=0.01), Broken(1, 10)], batch=4, timeout_s=0.01)
    with pytest.raises(RuntimeError, match="corrupt packet"):
        for _ in mux.batches():
            pass
    time.sleep(0.1)
    assert not any(t.name.startswith("fbtool-dec") and t.is_alive() for t in threading.enumerate())


def test_encoder_pool_keeps_each_streams_order_and_raises_writer_errors():
    from toolchain.blur.pipeline.streams import EncoderPool

    class W:
        def __init__(self):
            self.got = []

        def write(self, f):
            self.got.append(int(f[0]))

    ws = [W() for _ in range(5)]
    pool = EncoderPool(ws, workers=2)
    for i in range(20):
        for s in range(5):
            pool.put(s, np.array([i]))
    pool.close()
    assert all(w.got == list(range(20)) for w in ws)

    class Bad(W):
        def write(self, f):
            raise OSError("disk full")

    pool = EncoderPool([Bad()], workers=1)
    pool.put(0, np.array([0]))
    with pytest.raises(OSError, match="disk full"):
        pool.close()


def test_blur_streams_writes_one_output_per_input_and_the_proof_passes(recipe, tmp_path):
    """Two inputs blurred together (PyAV decode on the CPU, the graphed stage's eager body): one MP4 and
    one JSON per input, each with its own frames in order; the pixel proof passes on each output."""
    from toolchain.blur.engines import make_engine
    from toolchain.blur.multistream import blur_streams
    from toolchain.blur.proof import verify_video

    eng = make_engine(recipe, "torch", "cpu", batch=4, tensor_path=True)
    srcs = ["head-pose-face-detection-female-and-male.gif", "classroom.gif"]
    outs = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    js = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    info = blur_streams(recipe, srcs, outs, eng, js, encode=True, max_frames=5, nvdec=False, workers=2)
    assert info["frames"] == 10 and info["faces"] > 0 and info["inexact_frames"] == 0
    for src, out, j in zip(srcs, outs, js):
        rows = [json.loads(line) for line in j.read_text().splitlines()]
        assert [r["frame"] for r in rows] == list(range(5))
        proof = verify_video(recipe, src, out, max_frames=5)
        assert proof["ok"], proof["failures"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_blur_streams_refuses_inputs_of_different_sizes(recipe, tmp_path):
    from toolchain.blur.engines import make_engine
    from toolchain.blur.multistream import blur_streams
    from toolchain.errors import FbtoolError

    eng = make_engine(recipe, "torch", "cpu", batch=4, tensor_path=True)
    with pytest.raises(FbtoolError, match="different frame sizes"):
        blur_streams(recipe, ["classroom.gif", "one-by-one-person-detection.mp4"], None, eng, encode=False,
                     max_frames=2, nvdec=False)


def test_bench_streams_on_the_cpu_writes_json_markdown_and_plot(recipe, tmp_path):
    from toolchain.bench_streams import bench_streams, write_report

    res = bench_streams(recipe, "classroom.gif", streams=(1, 2), frames_per_stream=4, batch=4, precision="fp32",
                        naive_frames=2, decoder="cpu", blur=False, log=lambda *_: None)
    paths = write_report(res, tmp_path, "s")
    data = json.loads(paths["json"].read_text())
    assert [r["streams"] for r in data["runs"]] == [1, 2]
    assert [r["frames"] for r in data["runs"]] == [4, 8]
    for r in data["runs"]:
        assert r["fps"] > 0 and r["fps_per_stream"] == pytest.approx(r["fps"] / r["streams"])
        assert r["decode_only_fps"] > 0 and r["inexact_frames"] == 0
    assert data["naive"]["fps"] > 0 and "machine" in data and data["settings"]["decoder"] == "pyav-cpu"
    assert "| 2 | 8 |" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_mux_with_fewer_decoding_threads_than_streams_loses_nothing():
    from toolchain.blur.pipeline.streams import StreamMux

    decs = [_FakeDecoder(s, 3 + s) for s in range(5)]
    mux = StreamMux(decs, batch=4, timeout_s=0.01, threads=2)
    got: dict = {}
    for b in mux.batches():
        for sid, idx, *_ in b:
            got.setdefault(sid, []).append(idx)
    assert got == {s: list(range(3 + s)) for s in range(5)}
