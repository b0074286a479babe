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


# ----------------------------------------------------------------------------- several inputs, GPU path

GIF_A, GIF_B = "head-pose-face-detection-female-and-male.gif", "head-pose-face-detection-female.gif"


def _engine(recipe):
    from toolchain.blur.engines import make_engine

    return make_engine(recipe, "torch", "cpu", batch=4, tensor_path=True)


def test_plan_outputs_names_each_output_after_its_input_and_uris_after_their_path():
    from pathlib import Path

    from toolchain.blur.app import plan_outputs, uri_stem
    from toolchain.errors import FbtoolError

    assert uri_stem("rtsp://cam1.local:554/live/ch1") == "ch1"
    assert uri_stem("http://host/videos/lobby%20east.mp4?token=1") == "lobby_20east"
    assert uri_stem("rtsp://10.0.0.5:554/") == "10.0.0.5"
    pairs = plan_outputs([GIF_A, "rtsp://cam/live/door"], "out", uris=True)
    assert [o for _, o in pairs] == [Path("out/head-pose-face-detection-female-and-male.mp4"), Path("out/door.mp4")]
    assert pairs[1][0] == "rtsp://cam/live/door"
    assert plan_outputs(["rtsp://cam/a"], "x.mp4", uris=True) == [("rtsp://cam/a", Path("x.mp4"))]
    with pytest.raises(FbtoolError, match="stream URI") as e:  # the CPU path decodes files only
        plan_outputs(["rtsp://cam/a"], "x.mp4")
    assert "--device cuda" in e.value.hint
    with pytest.raises(FbtoolError, match="both write"):
        plan_outputs(["rtsp://a/live/ch1", "rtsp://b/live/ch1"], "out", uris=True)
    with pytest.raises(FbtoolError, match="names one MP4"):
        plan_outputs([GIF_A, GIF_B], "out.mp4", uris=True)


def test_gpu_path_blurs_several_inputs_into_one_output_each(recipe, tmp_path):
    """blur_nvdec with PyAV standing in for NVDEC and the graphed stage's eager body on the CPU: several
    inputs batched together, OUT/<stem>.mp4 + OUT/<stem>.faces.json per input, each its own frames."""
    from toolchain.blur.app import blur_nvdec
    from toolchain.blur.proof import verify_video
    from toolchain.media import video_info

    out = tmp_path / "out"
    res = blur_nvdec(recipe, [GIF_A, GIF_B], out, _engine(recipe), max_frames=4, nvdec=False, workers=2)
    assert [r["output"] for r in res] == [str(out / (n.rsplit(".", 1)[0] + ".mp4")) for n in (GIF_A, GIF_B)]
    for name, r in zip((GIF_A, GIF_B), res):
        video, side = out / (name.rsplit(".", 1)[0] + ".mp4"), out / (name.rsplit(".", 1)[0] + ".faces.json")
        assert video_info(video)["frames"] == 4 and r["frames"] == 4 and r["faces"] > 0
        data = json.loads(side.read_text())
        assert data["source"].endswith(name) and [f["frame"] for f in data["frames"]] == [0, 1, 2, 3]
        assert sum(len(f["faces"]) for f in data["frames"]) == r["faces"]
        assert verify_video(recipe, name, video, max_frames=4)["ok"]
    assert r["encoder"]["workers"] == 2 and r["encoder"]["frames"] == 8
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n.rsplit('.', 1)[0]}{s}" for n in (GIF_A, GIF_B) for s in (".mp4", ".faces.json"))

    # --no-encode: the sidecars only
    out2 = tmp_path / "dets"
    res = blur_nvdec(recipe, [GIF_A, GIF_B], out2, _engine(recipe), max_frames=2, encode=False, nvdec=False)
    assert all(r["output"] == "(not encoded)" for r in res)
    assert sorted(p.suffix for p in out2.iterdir()) == [".json", ".json"]


def test_gpu_path_bad_input_leaves_nothing_and_names_it(recipe, tmp_path):
    from toolchain.blur.app import blur_nvdec
    from toolchain.errors import FbtoolError

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    with pytest.raises(FbtoolError, match="broken.mp4") as e:
        blur_nvdec(recipe, [GIF_A, str(bad)], out, _engine(recipe), max_frames=2, nvdec=False)
    assert e.value.hint
    assert not out.exists() or not list(out.iterdir())
    with pytest.raises(FbtoolError, match="--json with several inputs"):
        blur_nvdec(recipe, [GIF_A, GIF_B], out, _engine(recipe), json_path=tmp_path / "d.jsonl", nvdec=False)
    with pytest.raises(FbtoolError, match="--verify with a stream URI"):
        blur_nvdec(recipe, [GIF_A, "rtsp://cam/live"], out, _engine(recipe), verify=True, nvdec=False)


def test_gpu_path_encoder_error_leaves_no_output(recipe, tmp_path, monkeypatch):
    """An encoder failing midway: the call fails and no output of it is left (nor a temporary)."""
    from toolchain.blur import writer
    from toolchain.blur.app import blur_nvdec

    calls = {"n": 0}
    real = writer.BlurWriter.write

    def flaky(self, frame):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        real(self, frame)

    monkeypatch.setattr(writer.BlurWriter, "write", flaky)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        blur_nvdec(recipe, [GIF_A, GIF_B], out, _engine(recipe), max_frames=4, nvdec=False, workers=1)
    assert not list(out.iterdir())


def test_cli_several_inputs_on_the_gpu_path(tmp_path, monkeypatch):
    """`fbtool blur A B -o DIR --device cuda --backend torch` end to end, with the engine's model on the
    CPU and PyAV standing in for NVDEC (this machine has neither a GPU nor NVDEC)."""
    from click.testing import CliRunner

    from toolchain.blur import engines
    from toolchain.blur.pipeline import streams
    from toolchain.cli import cli

    real = engines.make_engine

    class CpuAsCuda(engines.Engine):
        cuda = True

    def fake_engine(recipe, backend, device, **kw):
        e = real(recipe, "torch", "cpu", batch=4, tensor_path=True)
        return CpuAsCuda(**{f: getattr(e, f) for f in e.__dataclass_fields__})

    monkeypatch.setattr(engines, "make_engine", fake_engine)
    monkeypatch.setattr(streams, "open_decoder", lambda source, nvdec: streams.HostNv12Decoder(source))
    out = tmp_path / "out"
    base = ["blur", GIF_A, GIF_B, "--device", "cuda", "--backend", "torch", "--decoder", "nvdec", "--max-frames", "2"]
    res = CliRunner().invoke(cli, base + ["-o", str(out), "--stats"])
    assert res.exit_code == 0, res.output
    assert "2 input(s) blurred" in res.output and "CPU encoders" in res.output
    assert len(list(out.glob("*.mp4"))) == 2 and len(list(out.glob("*.faces.json"))) == 2
    res = CliRunner().invoke(cli, base + ["-o", str(tmp_path / "one.mp4")])
    assert res.exit_code != 0 and "folder" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, base + ["-o", str(tmp_path / "d"), "--no-encode"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(
        n.rsplit(".", 1)[0] + ".faces.json" for n in (GIF_A, GIF_B))


def test_cli_without_a_gpu_refuses_cuda_and_no_encode_in_one_line(tmp_path):
    import torch
    from click.testing import CliRunner

    from toolchain.cli import cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = CliRunner().invoke(cli, ["blur", GIF_A, GIF_B, "-o", str(tmp_path / "o"), "--device", "cuda",
                                   "--backend", "torch"])
    assert res.exit_code != 0 and "no CUDA GPU" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["blur", GIF_A, GIF_B, "-o", str(tmp_path / "o"), "--no-encode", "--backend", "torch"])
    assert res.exit_code != 0 and "NVDEC path" in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.gpu
def test_several_inputs_through_nvdec_on_the_gpu(recipe, tmp_path, monkeypatch):
    """The real path: NVDEC + CUDA graphs, two H.264 inputs batched together, one output each; each output
    passes the pixel proof, and its faces are the CPU reference detector's on the same NVDEC-decoded
    frames (same faces, box error <= 0.5 px)."""
    import av
    import torch

    from toolchain.blur.app import blur_nvdec
    from toolchain.blur.engines import make_engine
    from toolchain.blur.nvdec import available
    from toolchain.blur.ops.kernels import nv12_to_bgr
    from toolchain.blur.pipeline.streams import open_decoder
    from toolchain.blur.proof import verify_video
    from toolchain.compare.metrics import match
    from toolchain.detector import detect_batch
    from toolchain.media import read_frames
    from toolchain.reference.detections import Detections
    from toolchain.runners import TorchRunner

    if not torch.cuda.is_available() or not available()[0]:
        pytest.skip(f"needs a CUDA GPU and PyNvVideoCodec ({available()[1]})")
    srcs = []
    # Two H.264 inputs (NVDEC does not read GIFs), native size: upscaled faces are so smooth (Laplacian
    # variance ~30) that the encoder's own residual (~4) fails the 90% rule on any path, the CPU's too.
    for name in (GIF_A, GIF_B):
        p = tmp_path / (name.rsplit(".", 1)[0] + ".mp4")
        with av.open(str(p), "w") as c:
            s = c.add_stream("libx264", rate=10)
            s.width, s.height, s.pix_fmt = 480, 270, "yuv420p"
            s.options = {"crf": "12"}
            for f in read_frames(name, max_frames=6):
                for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
        srcs.append(p)
    eng = make_engine(recipe, "torch", "cuda", batch=4, precision="fp32")
    monkeypatch.setenv("FBTOOL_DECODE_THREADS", "1")  # one thread serves both decoders in turn (their streams)
    res = blur_nvdec(recipe, [str(s) for s in srcs], tmp_path / "out", eng, max_frames=6)
    runner = TorchRunner(recipe)
    for s, r in zip(srcs, res):
        assert r["frames"] == 6
        proof = verify_video(recipe, s, r["output"], max_frames=6)
        assert proof["ok"], proof["failures"]
        side = json.loads(open(r["sidecar"]).read())
        dec = open_decoder(str(s), nvdec=True)
        frames = [nv12_to_bgr(f[None])[0].cpu().numpy() for _, f, _ in dec.frames(6, sync=True)]
        assert len(frames) == len(side["frames"]) == 6
        for f, row in zip(frames, side["frames"]):
            ref = detect_batch([f], recipe, runner)[0]
            got = Detections(np.asarray([x["box"] for x in row["faces"]], dtype=np.float32).reshape(-1, 4),
                             np.asarray([x["score"] for x in row["faces"]], dtype=np.float32))
            m = match(ref, got, 0.5, with_masks=False)
            assert (m.fn, m.fp) == (0, 0), (row["frame"], len(ref), len(got))
            assert max(m.box_errors, default=0.0) <= 0.5


def test_frame_pool_hands_each_slot_to_one_frame_at_a_time():
    """Decoders write into a fixed pool (the muxer's batch buffer): every frame arrives with its own
    values, no slot is handed out again while a batch still holds it, and the pool never grows."""
    import torch

    from toolchain.blur.pipeline.streams import FramePool, StreamMux

    class Counting(_FakeDecoder):
        def frames(self, max_frames=None, sync=False, into=None):
            for i in range(self.n):
                yield (i, *into.write(torch.full((6, 8), self.sid * 16 + i, dtype=torch.uint8)))

    decs = [Counting(s, 9) for s in range(5)]
    mux = StreamMux(decs, batch=3, timeout_s=0.01, threads=2)
    mux.pool = FramePool(mux.pool_size(), (6, 8), "cpu", mux.stop)
    held: list = []
    got = 0
    for b in mux.batches():
        slots = [it[5] for it in b]
        assert len(set(slots)) == len(slots) and not set(slots) & {s for h in held for s in h}
        for sid, idx, frame, *_ in b:
            assert int(frame.min()) == int(frame.max()) == sid * 16 + idx
        held.append(slots)
        got += len(b)
        if len(held) == 2:  # a batch is read later than it arrives: release the older one only
            mux.pool.release_after(None, held.pop(0))
    assert got == 45 and mux.pool.buf.shape[0] == mux.pool_size() == 3 * 3 + 2
