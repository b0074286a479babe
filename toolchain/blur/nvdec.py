"""NVDEC decode into GPU memory through PyNvVideoCodec (the optional extra `fbtool[nvdec]`).

Each source gets a demuxer (FFmpeg, inside the wheel: files and the RTSP/HTTP URIs FFmpeg opens) and a
hardware decoder on PyTorch's CUDA context; every decoded NV12 surface is cloned into a PyTorch tensor
[H*3/2, W] uint8 (decoder surfaces are reused) on the decoding thread's own stream.
"""

from __future__ import annotations

from ..errors import MissingDependency


def available() -> tuple[bool, str]:
    try:
        import PyNvVideoCodec  # noqa: F401
    except Exception as exc:  # ImportError, or its native library failing to load
        return False, f"PyNvVideoCodec: {exc}"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    return True, ""


def _require():
    ok, why = available()
    if not ok:
        raise MissingDependency("PyNvVideoCodec", f"NVDEC decoding ({why})",
                                "pip install 'fbtool[nvdec]' on a machine with an NVIDIA GPU and driver")
    import PyNvVideoCodec as nvc

    return nvc


def _primary_context() -> int:
    """PyTorch's context (the device's primary one), so decoded surfaces are PyTorch-addressable."""
    import torch

    torch.cuda.init()
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # older cuda-python
        except ImportError:
            return 0  # PyNvVideoCodec then retains the primary context itself
    try:
        err, ctx = driver.cuCtxGetCurrent()
        if int(ctx) == 0:
            err, dev = driver.cuDeviceGet(torch.cuda.current_device())
            err, ctx = driver.cuDevicePrimaryCtxRetain(dev)
        return int(ctx)
    except Exception:  # bindings of another shape: let PyNvVideoCodec pick the primary context
        return 0


class NvDecoder:
    """One source: `frames()` yields its NV12 frames as PyTorch tensors of its own."""

    def __init__(self, source: str, gpu: int = 0, context: int | None = None):
        import torch

        nvc = _require()
        self.source = str(source)
        self.stream = torch.cuda.Stream()
        self.dmx = nvc.CreateDemuxer(filename=self.source)
        self.width, self.height = int(self.dmx.Width()), int(self.dmx.Height())
        self.dec = nvc.CreateDecoder(gpuid=gpu, codec=self.dmx.GetNvCodecId(),
                                     cudacontext=_primary_context() if context is None else context,
                                     cudastream=self.stream.cuda_stream, usedevicememory=True)
        self.layout: dict | None = None

    def frames(self, max_frames: int | None = None, sync: bool = False):
        """Yields (index, NV12 tensor, event): the event marks the clone's end on this decoder's stream
        (the consumer waits on it on its own stream; no host sync per frame). sync=True: the host waits
        instead and the event is None."""
        import torch

        n = 0
        with torch.cuda.stream(self.stream):
            for pkt in self.dmx:
                for f in self.dec.Decode(pkt):
                    v = torch.from_dlpack(f)
                    if self.layout is None:  # what the surface looked like (docs, diagnostics)
                        self.layout = {"shape": list(v.shape), "stride": list(v.stride()), "dtype": str(v.dtype),
                                       "plane1_offset": _plane_offset(f, v)}
                    # Decode's own copies run on this stream too (cudastream above), so a surface is
                    # overwritten only after this clone: no host wait is needed for that.
                    t = v.clone()
                    ev = None
                    if sync:
                        self.stream.synchronize()
                    else:
                        ev = torch.cuda.Event()
                        ev.record(self.stream)
                    yield n, t, ev
                    n += 1
                    if max_frames is not None and n >= max_frames:
                        return


def _plane_offset(frame, view) -> int | None:
    """Bytes from the luma plane to the chroma plane (NV12 packed as [H*3/2, W] means H * pitch)."""
    try:
        return int(frame.GetPtrToPlane(1)) - int(frame.GetPtrToPlane(0))
    except Exception:
        return None
