"""NVDEC decode into GPU memory through PyNvVideoCodec (the optional extra `fbtool[nvdec]`).

Each source gets a demuxer (FFmpeg, inside the wheel: files and the RTSP/HTTP URIs FFmpeg opens) and a
hardware decoder on PyTorch's CUDA context. Each decoded NV12 surface [H*3/2, W] uint8 is either cloned
into a PyTorch tensor of its own, or (clone=False, what the muxer does) handed out as a view that the
caller copies into its own buffer before asking for the next frame (decoder surfaces are reused); both
on the decoder's own CUDA stream.

PyNvVideoCodec 2.2.4's CreateDecoder (its docstrings, read from the wheel) takes gpuid, codec,
cudacontext, cudastream, usedevicememory, maxwidth/maxheight (0: the stream's size), outputColorType,
enableSEIMessage, bWaitForSessionWarmUp, latency and enableDecodeStats; the number of NVDEC decode
surfaces is not among them (the parser's minimum is used). `latency` LOW/ZERO would hold fewer frames
inside the decoder, but the wheel's own sample (decode_with_low_latency.py) says not to use either on
streams with B-frames, which x264's presets and most cameras' main-profile streams have: left NATIVE.
fbtool's own decoder session (blur/fbnvdec.py, `--decoder fbtool`) sets the surface count itself and
keeps this module's demuxer.
"""

from __future__ import annotations

from ..errors import FbtoolError, MissingDependency


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
        try:
            self.dmx = nvc.CreateDemuxer(filename=self.source)
            self.width, self.height = int(self.dmx.Width()), int(self.dmx.Height())
            self.dec = nvc.CreateDecoder(gpuid=gpu, codec=self.dmx.GetNvCodecId(),
                                         cudacontext=_primary_context() if context is None else context,
                                         cudastream=self.stream.cuda_stream, usedevicememory=True)
        except Exception as exc:  # PyNvVideoCodec raises RuntimeError/ValueError with FFmpeg's or NVDEC's text
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise FbtoolError(f"cannot decode {self.source} with NVDEC: {why}",
                              "check that it is an H.264/HEVC/AV1 video that plays (or the URI is reachable)") from exc
        self.layout: dict | None = None

    def frames(self, max_frames: int | None = None, sync: bool = False, clone: bool = True, into=None):
        """Yields (index, NV12 tensor, event): the event marks the clone's end on this decoder's stream
        (the consumer waits on it on its own stream; no host sync per frame). sync=True: the host waits
        instead and the event is None. clone=False: the tensor is a view of the decoder's surface, valid
        until the next frame is asked for (the caller copies it on `self.stream`), and the event is None.
        into: a streams.FramePool; each surface is copied into one of its slots (on this decoder's stream,
        no tensor of its own) and the slot's frame is yielded with its event."""
        import torch

        n = 0
        for pkt in self.dmx:
            # This decoder's stream is current only around its own work, never across a yield: one thread
            # serves several decoders in turn, and a context held across yields would leave another
            # decoder's stream current, so a copy would run on the wrong stream, unordered with its event.
            with torch.cuda.stream(self.stream):
                out = []
                for f in self.dec.Decode(pkt):
                    if max_frames is not None and n + len(out) >= max_frames:
                        break  # no pool slot taken for a frame nobody will read
                    v = torch.from_dlpack(f)
                    if self.layout is None:  # what the surface looked like (docs, diagnostics)
                        self.layout = {"shape": list(v.shape), "stride": list(v.stride()), "dtype": str(v.dtype),
                                       "plane1_offset": _plane_offset(f, v)}
                    # Decode's own copies run on this stream too (cudastream above), so a surface is
                    # overwritten only after these copies: no host wait is needed for that.
                    if into is not None:
                        out.append(into.write(v, self.stream))
                    elif not clone:
                        out.append((v, None))  # valid until the next packet is decoded
                    elif sync:
                        t = v.clone()
                        self.stream.synchronize()
                        out.append((t, None))
                    else:
                        t = v.clone()
                        ev = torch.cuda.Event()
                        ev.record(self.stream)
                        out.append((t, ev))
            for t, ev in out:
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
