"""fbtool's own NVDEC decoder session (plugins/nvdec/, C++ on NVIDIA's Video Codec API), loaded by ctypes.

Why, next to PyNvVideoCodec (blur/nvdec.py): at 32 streams the whole-process GPU memory and the decoding
side's throughput were both bound by it (docs/bench.md, issue 18). PyNvVideoCodec 2.2.4 creates its
decoders with a surface count of its own choosing and keeps output frames of its own, and each frame
is a few Python calls under the GIL. This session creates its decoder with the stream's
min_num_decode_surfaces and one output surface, and one foreign call per packet parses, decodes and
copies the displayed frames straight into slots of the frame pool (streams.FramePool's buffer); ctypes
releases the GIL for the whole call. Demuxing stays PyNvVideoCodec's (FFmpeg inside the wheel; a
packet is a pointer and a size).

The library is built on first use into fbtool's cache (FBTOOL_CACHE, as the DeepStream component's
builds) with g++ against FFmpeg's nv-codec-headers (`libffmpeg-nvenc-dev`; or FBTOOL_NVCODEC_INCLUDE=
a folder holding ffnvcodec/); FBTOOL_NVDEC_LIB names a prebuilt one instead. It dlopens libcuda and
libnvcuvid itself: no CUDA SDK is needed to build it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from ..errors import FbtoolError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "nvdec"
LIB_NAME = "libfbtool_nvdec.so"
HEADERS = ("dynlink_loader.h", "dynlink_cuda.h", "dynlink_cuviddec.h", "dynlink_nvcuvid.h", "nvEncodeAPI.h")
ABI = 2  # FBTOOL_NVDEC_ABI
EOS = 1  # FBTOOL_NVDEC_EOS
ERROR, STOPPED = -1, -2
# Frames one call hands out at most; more (an end-of-stream flush) are fetched by further calls.
CAP = 16
# The frames a private pool holds when the caller gives none (frames(into=None)): an end-of-stream flush
# writes every frame the parser still holds within one call, so it must fit (H.264 holds at most 16).
OWN_POOL = 20
HINT = ("install FFmpeg's nv-codec-headers (apt-get install libffmpeg-nvenc-dev) and g++, or use "
        "--decoder pynvvideocodec")


class Frame(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_int32), ("flags", ctypes.c_int32), ("pts", ctypes.c_int64)]


class Stats(ctypes.Structure):
    _fields_ = [("codec", ctypes.c_int32), ("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("coded_width", ctypes.c_int32), ("coded_height", ctypes.c_int32),
                ("min_decode_surfaces", ctypes.c_int32), ("decode_surfaces", ctypes.c_int32),
                ("output_surfaces", ctypes.c_int32), ("packets", ctypes.c_int64), ("frames", ctypes.c_int64),
                ("decode_errors", ctypes.c_int64), ("slot_waits", ctypes.c_int64), ("slot_wait_s", ctypes.c_double)]


def include_dir() -> Path | None:
    """The folder holding ffnvcodec/dynlink_loader.h, or None."""
    cands = [os.environ.get("FBTOOL_NVCODEC_INCLUDE", "")]
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--cflags-only-I", "ffnvcodec"], capture_output=True, text=True)
        cands += [t[2:] for t in r.stdout.split() if t.startswith("-I")]
    cands += ["/usr/include", "/usr/local/include"]
    for c in cands:
        if c and (Path(c) / "ffnvcodec" / "dynlink_loader.h").is_file():
            return Path(c)
    return None


def missing_reason() -> str | None:
    """Why the library cannot be built here (None: it can, or a prebuilt one is named)."""
    if os.environ.get("FBTOOL_NVDEC_LIB"):
        return None
    if include_dir() is None:
        return "FFmpeg's nv-codec-headers (ffnvcodec/dynlink_loader.h) not found"
    if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "g++")) is None:
        return "make / g++ not found"
    return None


@lru_cache(maxsize=None)
def build() -> Path:
    """The library, built into the cache once per source and header version; returns its path."""
    pre = os.environ.get("FBTOOL_NVDEC_LIB")
    if pre:
        if not Path(pre).is_file():
            raise FbtoolError(f"FBTOOL_NVDEC_LIB={pre} does not exist", "unset it to build the decoder here")
        return Path(pre)
    why = missing_reason()
    if why:
        raise FbtoolError(f"cannot build fbtool's NVDEC decoder: {why}", HINT)
    inc = include_dir()
    h = hashlib.sha256(str(inc).encode())
    for f in sorted(PLUGIN.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    for name in HEADERS:
        p = inc / "ffnvcodec" / name
        h.update(name.encode() + (p.read_bytes() if p.is_file() else b""))
    out = Path(os.environ.get("FBTOOL_CACHE", Path.home() / ".cache" / "fbtool")) / "nvdec" / h.hexdigest()[:16]
    lib = out / LIB_NAME
    if lib.is_file():
        return lib
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".nvdec-", dir=out.parent))
    r = subprocess.run(["make", "-s", "-C", str(PLUGIN), f"BUILD_DIR={tmp}", f"NVCODEC_INCLUDE={inc}", "lib"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FbtoolError(f"compiling plugins/nvdec failed:\n{r.stderr[-3000:]}",
                          "the nv-codec-headers changed, or the session's code is wrong")
    try:
        tmp.rename(out)  # whole folder by rename: another process never sees a half-written library
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


@lru_cache(maxsize=None)
def load() -> ctypes.CDLL:
    """The library with its signatures declared (ctypes.CDLL: the GIL is released during every call)."""
    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise FbtoolError(f"cannot load {path}: {exc}", HINT) from exc
    c = ctypes
    P, I32, I64, U64, S = c.c_void_p, c.c_int32, c.c_int64, c.c_uint64, c.c_char_p
    sig = {"fbtool_nvdec_abi": (c.c_int, []), "fbtool_nvdec_sizes": (None, [c.POINTER(I32), c.POINTER(I32)]),
           "fbtool_nvdec_pool_create": (P, [I32, U64, I64, I32, I32, I32, S, I32]),
           "fbtool_nvdec_pool_release": (I32, [P, U64, I32, c.POINTER(I32), I32]),
           "fbtool_nvdec_pool_halt": (None, [P]), "fbtool_nvdec_pool_free": (I32, [P]),
           "fbtool_nvdec_pool_destroy": (None, [P]),
           "fbtool_nvdec_open": (P, [P, I32, I32, I32, S, I32]),
           "fbtool_nvdec_decode": (I32, [P, P, I64, I64, I32, c.POINTER(Frame), I32]),
           "fbtool_nvdec_error": (S, [P]), "fbtool_nvdec_stats": (I32, [P, c.POINTER(Stats)]),
           "fbtool_nvdec_close": (None, [P])}
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    if lib.fbtool_nvdec_abi() != ABI:
        raise FbtoolError(f"{path} has ABI {lib.fbtool_nvdec_abi()}, this fbtool expects {ABI}",
                          "remove fbtool's cache folder nvdec/ (or FBTOOL_NVDEC_LIB) and run again")
    sizes = (I32(), I32())
    lib.fbtool_nvdec_sizes(ctypes.byref(sizes[0]), ctypes.byref(sizes[1]))
    if (sizes[0].value, sizes[1].value) != (ctypes.sizeof(Frame), ctypes.sizeof(Stats)):
        raise FbtoolError(f"{path}: struct sizes {sizes[0].value}/{sizes[1].value} differ from the binding's "
                          f"{ctypes.sizeof(Frame)}/{ctypes.sizeof(Stats)}", "rebuild: remove fbtool's cache folder nvdec/")
    return lib


def available() -> tuple[bool, str]:
    """Whether this decoder can run here: PyNvVideoCodec's demuxer, a GPU, and the library built."""
    from .nvdec import available as pnv_available

    ok, why = pnv_available()
    if not ok:
        return ok, why
    try:
        load()
    except FbtoolError as exc:
        return False, str(exc).splitlines()[0]
    return True, ""


class NativeFramePool:
    """streams.FramePool's buffer with its free list kept inside the C++ library, so that the decoding
    calls take slots without the GIL. Same interface for the muxer: buf, views, slot(), release_on(stream,
    slots) / release_after(None, slots), reap(), halt(), stop."""

    native = True

    def __init__(self, n: int, shape: tuple, device="cuda", stop: threading.Event | None = None, gpu: int = 0):
        import torch

        self.lib = load()
        self.buf = torch.empty((n, *shape), dtype=torch.uint8, device=device)
        self.views = list(self.buf.unbind(0))
        self.frame_bytes = self.views[0].numel()
        self.stop = stop or threading.Event()
        h, w = shape[0] * 2 // 3, shape[1]
        err = ctypes.create_string_buffer(512)
        self.handle = self.lib.fbtool_nvdec_pool_create(gpu, self.buf.data_ptr(), self.frame_bytes, w, h, n, err, 512)
        if not self.handle:
            raise FbtoolError(f"cannot start fbtool's NVDEC decoder: {err.value.decode(errors='replace')}",
                              "NVDEC needs the NVIDIA driver's libnvcuvid.so.1 (and NVIDIA_DRIVER_CAPABILITIES "
                              "with 'video' in containers); or use --decoder pynvvideocodec")

    def slot(self, frame) -> int:
        return (frame.data_ptr() - self.buf.data_ptr()) // self.frame_bytes

    def _release(self, slots, stream) -> None:
        slots = list(slots)
        arr = (ctypes.c_int32 * max(1, len(slots)))(*slots)
        if self.lib.fbtool_nvdec_pool_release(self.handle, 0 if stream is None else stream.cuda_stream,
                                              0 if stream is None else 1, arr, len(slots)) != 0:
            raise FbtoolError("fbtool's NVDEC frame pool: releasing slots failed", "a bug: report it with -v")

    def release_on(self, stream, slots) -> None:
        """Free `slots` once the work queued so far on `stream` (a torch CUDA stream, None: now) has run."""
        self._release(slots, stream)

    def release_after(self, event, slots) -> None:
        if event is not None:  # the muxer passes streams (release_on); an event here would be waited on first
            event.synchronize()
        self._release(slots, None)

    def reap(self) -> None:
        """Nothing to do: completed releases are reaped inside the library when a slot is taken."""

    def halt(self) -> None:
        self.lib.fbtool_nvdec_pool_halt(self.handle)

    def free_slots(self) -> int:
        return self.lib.fbtool_nvdec_pool_free(self.handle)

    def close(self) -> None:
        if getattr(self, "handle", None):
            self.lib.fbtool_nvdec_pool_destroy(self.handle)
            self.handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class FbNvDecoder:
    """One source: PyNvVideoCodec's demuxer, fbtool's decoder session. `frames()` as nvdec.NvDecoder's."""

    kind = "fbtool"

    def __init__(self, source: str, gpu: int = 0, extra_surfaces: int = 0, display_delay: int | None = None):
        from .nvdec import _require

        nvc = _require()
        self.lib = load()
        self.source, self.gpu, self.extra_surfaces = str(source), gpu, extra_surfaces
        # the parser's ulMaxDisplayDelay (NVIDIA's NvDecoder: 1); env FBTOOL_NVDEC_DISPLAY_DELAY to measure others
        self.display_delay = int(os.environ.get("FBTOOL_NVDEC_DISPLAY_DELAY", "1")) if display_delay is None else display_delay
        try:
            self.dmx = nvc.CreateDemuxer(filename=self.source)
            self.width, self.height = int(self.dmx.Width()), int(self.dmx.Height())
            self.codec = int(self.dmx.GetNvCodecId())
        except Exception as exc:  # PyNvVideoCodec raises RuntimeError/ValueError with FFmpeg's text
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise FbtoolError(f"cannot decode {self.source} with NVDEC: {why}",
                              "check that it is an H.264/HEVC/AV1 video that plays (or the URI is reachable)") from exc
        self.pts: list[int] = []  # of the frames handed out, in order
        self.stats: dict | None = None
        self.layout: dict | None = None

    def make_pool(self, n: int, shape: tuple, device="cuda", stop=None) -> NativeFramePool:
        """The pool the muxer allocates for decoders of this kind (streams.make_pool)."""
        return NativeFramePool(n, shape, device, stop, self.gpu)

    def _open(self, pool: NativeFramePool):
        err = ctypes.create_string_buffer(512)
        s = self.lib.fbtool_nvdec_open(pool.handle, self.codec, self.extra_surfaces, self.display_delay, err, 512)
        if not s:
            raise FbtoolError(f"cannot decode {self.source} with fbtool's NVDEC decoder: "
                              f"{err.value.decode(errors='replace')}", "check that the GPU's NVDEC decodes this codec")
        return s

    def _failed(self, sess, code: int):
        from .pipeline.core import Stopped

        if code == STOPPED:
            raise Stopped
        why = (self.lib.fbtool_nvdec_error(sess) or b"").decode(errors="replace")
        raise FbtoolError(f"cannot decode {self.source} with fbtool's NVDEC decoder: {why}",
                          "check that it is an H.264/HEVC/AV1 video that plays")

    def frames(self, max_frames: int | None = None, sync: bool = False, clone: bool = True, into=None):
        """Yields (index, NV12 tensor [H*3/2, W], None). into: a NativeFramePool (the muxer's); the tensor is
        its slot, written and complete (the copy ran inside the call), released by the consumer. Without
        `into`: a tensor of its own (clone on the current stream; sync=True: the host waits for it)."""
        import torch

        pool = into if into is not None else self.make_pool(OWN_POOL, (self.height * 3 // 2, self.width))
        if not getattr(pool, "native", False):
            raise FbtoolError("fbtool's NVDEC decoder writes into its own frame pool only", "a bug: report it with -v")
        sess = self._open(pool)
        out = (Frame * CAP)()
        n = 0
        self.pts = []
        done = max_frames is not None and max_frames <= 0
        try:
            flushed = False
            pkts = iter(self.dmx)
            while not done:
                pkt = next(pkts, None)
                if pkt is None:  # the demuxer ended without its empty end packet: flush anyway
                    data, size, pts, flags = None, 0, 0, EOS
                else:
                    size = int(pkt.bsl)
                    data, pts, flags = (int(pkt.bsl_data), int(pkt.pts), 0) if size else (None, 0, EOS)
                if flags == EOS:
                    flushed = True
                k = self.lib.fbtool_nvdec_decode(sess, data, size, pts, flags, out, CAP)
                while True:
                    if k < 0:
                        self._failed(sess, k)
                    for i in range(k):
                        slot, fpts = out[i].slot, out[i].pts
                        if done:  # past max_frames: not handed out, free again now
                            pool.release_on(None, [slot])
                            continue
                        v = pool.views[slot]
                        if self.layout is None:
                            self.layout = {"shape": list(v.shape), "stride": list(v.stride()), "dtype": str(v.dtype)}
                        self.pts.append(fpts)
                        if into is None:
                            t = v.clone()
                            cur = torch.cuda.current_stream()
                            pool.release_on(cur, [slot])  # the clone, queued on `cur`, reads it first
                            if sync:
                                cur.synchronize()
                            yield n, t, None
                        else:
                            yield n, v, None
                        n += 1
                        done = max_frames is not None and n >= max_frames
                    if k < CAP:
                        break
                    k = self.lib.fbtool_nvdec_decode(sess, None, 0, 0, 0, out, CAP)  # frames still waiting
                if flushed:
                    break
        finally:
            st = Stats()
            self.lib.fbtool_nvdec_stats(sess, ctypes.byref(st))
            self.stats = {name: getattr(st, name) for name, _ in Stats._fields_}
            self.lib.fbtool_nvdec_close(sess)  # frames written but not handed out go back to the pool
            if into is None:
                torch.cuda.current_stream().synchronize()  # the last clones read the private pool
                pool.close()
