"""fbtool's own NVDEC decoder session (plugins/nvdec/, toolchain/blur/fbnvdec.py).

Here (no GPU): the C++ compiles against FFmpeg's real nv-codec-headers (the Debian package
libffmpeg-nvenc-dev; skipped with the reason when absent), the C structs and the ctypes binding agree
field by field (offsets printed by a program compiled against fbtool_nvdec.h), and the error paths are
one line with a hint. On the GPU (gpu-marked, the lent H200): the session's NV12 frames equal
PyNvVideoCodec's, bit for bit (the same NVDEC hardware), for every frame of a clip with B-frame
reordering, including the frames the end-of-stream flush gives out; frame count and pts order equal;
and again through the muxer's frame pool with several sessions on one decoding thread.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from pathlib import Path

import pytest

from toolchain.blur import fbnvdec
from toolchain.errors import FbtoolError

REPO = Path(__file__).resolve().parent.parent
# The 1080p clip of scripts/make_faces_clip.py (x264 veryfast: B-frames, b-pyramid): FBTOOL_TEST_CLIP
CLIP = os.environ.get("FBTOOL_TEST_CLIP", "")


def _needs_headers():
    why = fbnvdec.missing_reason()
    if why:
        pytest.skip(f"cannot build plugins/nvdec here: {why}")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache and no memoised build, so each test builds (or fails to) for itself."""
    monkeypatch.setenv("FBTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FBTOOL_NVDEC_LIB", raising=False)
    fbnvdec.build.cache_clear()
    fbnvdec.load.cache_clear()
    yield tmp_path
    fbnvdec.build.cache_clear()
    fbnvdec.load.cache_clear()


def test_compiles_against_nv_codec_headers_and_exports_only_the_c_abi(fresh):
    _needs_headers()
    lib = fbnvdec.build()
    assert lib.is_file() and lib.parent.parent == fresh / "cache" / "nvdec"
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    exported = sorted(p[2] for p in (ln.split() for ln in nm.splitlines()) if len(p) == 3 and p[1] == "T")
    header = (REPO / "plugins" / "nvdec" / "fbtool_nvdec.h").read_text()
    declared = sorted({w.split("(")[0].lstrip("*") for w in header.split() if w.lstrip("*").startswith("fbtool_nvdec_")
                       and "(" in w})
    assert exported == declared
    # no CUDA library is linked: libcuda and libnvcuvid are dlopen'ed when a pool is made
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    assert "libcuda" not in ldd and "libnvcuvid" not in ldd
    assert fbnvdec.build() == lib  # cached: built once per source


def test_structs_agree_between_c_and_ctypes(fresh, tmp_path):
    _needs_headers()
    src = tmp_path / "offsets.cpp"
    fields = {"FbtoolNvdecFrame": fbnvdec.Frame, "FbtoolNvdecStats": fbnvdec.Stats}
    body = []
    for cname, cls in fields.items():
        body.append(f'printf("\\"{cname}\\": [%zu", sizeof({cname}));')
        for name, _ in cls._fields_:
            body.append(f'printf(", %zu", offsetof({cname}, {name}));')
        body.append('printf("]%s", "' + (", " if cname != "FbtoolNvdecStats" else "") + '");')
    src.write_text('#include <cstddef>\n#include <cstdio>\n#include "fbtool_nvdec.h"\nint main() {printf("{");'
                   + "".join(body) + 'printf("}\\n"); return 0;}\n')
    exe = tmp_path / "offsets"
    subprocess.run(["g++", "-std=c++17", f"-I{REPO / 'plugins' / 'nvdec'}", "-o", str(exe), str(src)], check=True)
    c = json.loads(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
    for cname, cls in fields.items():
        py = [ctypes.sizeof(cls)] + [getattr(cls, name).offset for name, _ in cls._fields_]
        assert c[cname] == py, cname
    lib = fbnvdec.load()  # the library's own sizes, checked again at every load
    assert lib.fbtool_nvdec_abi() == fbnvdec.ABI


def test_no_gpu_driver_is_one_line_with_a_hint(fresh):
    _needs_headers()
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the driver's libraries load")
    with pytest.raises(FbtoolError) as e:
        fbnvdec.NativeFramePool(4, (6, 4), device="cpu")
    msg = str(e.value)
    assert "libcuda.so.1" in msg and "\n" not in msg and e.value.hint


def test_missing_headers_or_library_are_one_line_with_a_hint(fresh, monkeypatch, tmp_path):
    monkeypatch.setattr(fbnvdec, "include_dir", lambda: None)
    with pytest.raises(FbtoolError) as e:
        fbnvdec.build()
    assert "nv-codec-headers" in str(e.value) and "libffmpeg-nvenc-dev" in e.value.hint
    fbnvdec.build.cache_clear()
    monkeypatch.setenv("FBTOOL_NVDEC_LIB", str(tmp_path / "nope.so"))
    with pytest.raises(FbtoolError) as e:
        fbnvdec.build()
    assert "FBTOOL_NVDEC_LIB" in str(e.value)
    fbnvdec.build.cache_clear()
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not a library")
    monkeypatch.setenv("FBTOOL_NVDEC_LIB", str(bad))
    with pytest.raises(FbtoolError) as e:
        fbnvdec.load()
    assert "cannot load" in str(e.value) and "\n" not in str(e.value)


def test_decoder_choice():
    from toolchain.blur.pipeline import streams

    assert streams.resolve_decoder("cpu", True) is None
    assert streams.resolve_decoder("auto", False) is None
    assert streams.resolve_decoder("pynvvideocodec", True) == "pynvvideocodec"
    assert streams.nvdec_kind(True) == streams.NVDEC_DEFAULT and streams.nvdec_kind(False) is None
    with pytest.raises(FbtoolError):
        streams.open_decoder("x.mp4", "nvjpeg")


def test_decoding_threads_and_pool_follow_the_decoder_kind(monkeypatch):
    from toolchain.blur.pipeline.streams import DECODE_THREADS, DECODE_THREADS_FBTOOL, StreamMux

    monkeypatch.delenv("FBTOOL_DECODE_THREADS", raising=False)

    class Fb:
        kind = "fbtool"

    class Pnv:
        kind = "pynvvideocodec"

    fb, pnv = StreamMux([Fb()] * 40, 32), StreamMux([Pnv()] * 40, 32)
    assert fb._thread_count() == DECODE_THREADS_FBTOOL and pnv._thread_count() == DECODE_THREADS
    assert StreamMux([Fb()] * 2, 32)._thread_count() == 2
    # an end-of-stream flush writes several frames inside one call: 3 slots per fbtool thread
    assert fb.pool_size() == 3 * 32 + 3 * DECODE_THREADS_FBTOOL and pnv.pool_size() == 3 * 32 + DECODE_THREADS
    monkeypatch.setenv("FBTOOL_DECODE_THREADS", "8")
    assert fb._thread_count() == 8


def test_fbtool_decoder_refuses_a_tensor_per_frame():
    from toolchain.blur.pipeline.streams import run_streams

    class Runner:
        batch, cuda = 4, False

    class Dec:
        kind, width, height = "fbtool", 4, 4

    with pytest.raises(FbtoolError) as e:
        run_streams(Runner(), [Dec()], frame_pool=False)
    assert "pynvvideocodec" in e.value.hint


# ---- on the GPU -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_clip():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    pytest.importorskip("PyNvVideoCodec", exc_type=ImportError)
    ok, why = fbnvdec.available()
    if not ok:
        pytest.skip(why)
    if not CLIP or not Path(CLIP).is_file():
        pytest.skip("FBTOOL_TEST_CLIP (scripts/make_faces_clip.py's 1080p clip) not given")
    return CLIP


@pytest.fixture(scope="module")
def reference(gpu_clip):
    """PyNvVideoCodec's frames of the clip (its own demuxer and decoder), on the GPU, and their pts."""
    import PyNvVideoCodec as nvc
    import torch

    from toolchain.blur.nvdec import _primary_context

    stream = torch.cuda.Stream()
    dmx = nvc.CreateDemuxer(filename=gpu_clip)
    dec = nvc.CreateDecoder(gpuid=0, codec=dmx.GetNvCodecId(), cudacontext=_primary_context(),
                            cudastream=stream.cuda_stream, usedevicememory=True)
    frames, pts, packet_pts = [], [], []
    with torch.cuda.stream(stream):
        for pkt in dmx:
            if pkt.bsl:
                packet_pts.append(int(pkt.pts))
            for f in dec.Decode(pkt):
                frames.append(torch.from_dlpack(f).clone())
                pts.append(int(f.getPTS()))
    stream.synchronize()
    del dec, dmx
    # the clip must exercise reordering: packets (decode order) out of display order
    assert packet_pts != sorted(packet_pts)
    return frames, pts


@pytest.mark.gpu
def test_frames_equal_pynvvideocodecs_bit_for_bit(gpu_clip, reference):
    ref, ref_pts = reference
    dec = fbnvdec.FbNvDecoder(gpu_clip)
    got = [f for _, f, _ in dec.frames(sync=True)]
    assert len(got) == len(ref) and dec.pts == ref_pts and ref_pts == sorted(ref_pts)
    assert got[0].shape == ref[0].shape == (dec.height * 3 // 2, dec.width)
    bad = [i for i, (a, b) in enumerate(zip(got, ref)) if not bool((a == b).all())]
    assert not bad, f"{len(bad)} frames differ, first {bad[:5]}"
    st = dec.stats
    # fewest surfaces NVDEC allows for this stream, one output surface; no decode errors
    assert st["decode_surfaces"] == st["min_decode_surfaces"] > 0 and st["output_surfaces"] == 1
    assert st["decode_errors"] == 0 and st["frames"] == len(ref)
    print(json.dumps({"frames": len(ref), **st}))


@pytest.mark.gpu
def test_through_the_muxers_pool_several_sessions_on_one_thread(gpu_clip, reference):
    """3 sessions of the clip on ONE decoding thread, a small batch (the pool runs short of free slots,
    so sessions wait inside the library for the consumer's releases), every frame to its end."""
    import torch

    from toolchain.blur.pipeline.streams import StreamMux, make_pool

    ref, _ = reference
    decs = [fbnvdec.FbNvDecoder(gpu_clip) for _ in range(3)]
    mux = StreamMux(decs, batch=4, timeout_s=0.01, threads=1)
    mux.pool = make_pool(decs, mux.pool_size(), "cuda", mux.stop)
    seen = {i: [] for i in range(3)}
    cur = torch.cuda.current_stream()
    for b in mux.batches():
        for sid, idx, frame, _, ev, _slot in b:
            assert ev is None  # written and complete when handed out
            seen[sid].append((idx, bool((frame == ref[idx]).all())))
        mux.pool.release_on(cur, [it[5] for it in b])
    for sid, rows in seen.items():
        assert [i for i, _ in rows] == list(range(len(ref))), sid
        assert all(ok for _, ok in rows), sid
