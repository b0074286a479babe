"""`fbtool bench`: the seed's comparison, measured in one run on the same frames.

(A) the naive loop a proof-of-concept script would be: one frame at a time, sequentially
    preprocess (OpenCV) -> PyTorch fp32 -> reference post-processing (numpy) -> full-frame Gaussian
    blur blended with a full-frame mask (OpenCV/numpy) -> encode;
(B) fbtool's pipelined job (toolchain.blur) for each backend asked for.
Frames come from the shared clips, resized to --size, held in host memory (pinned for the CUDA
engine), so decoding the clips is outside the timing for both. Reported per run: frames/s, per-frame
latency p50/p99, peak host RSS (sampled), peak GPU memory (torch.cuda.max_memory_allocated), the
per-stage busy times (what bounds the pipeline), and the ratio to (A).
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .errors import FbtoolError
from .fsutil import atomic_path, write_json, write_text

DEFAULT_CLIPS = ("classroom.gif", "head-pose-face-detection-female-and-male.gif", "face-demographics-walking.gif",
                 "one-by-one-person-detection.mp4")


def parse_size(size: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise FbtoolError(f"--size {size!r} is not WIDTHxHEIGHT", "e.g. --size 1920x1080") from None
    if w <= 0 or h <= 0:
        raise FbtoolError(f"--size {size!r} must be positive")
    return w, h


def load_source_frames(clips=DEFAULT_CLIPS, per_clip: int = 16, npy: str | None = None) -> np.ndarray:
    """Unique source frames [U, h, w, 3] (native size): from a .npy/.npz file, or decoded from the clips.

    The MP4 holds faces late in the clip only, so it is sampled from frame 1300 on.
    """
    if npy:
        data = np.load(npy)
        return data[data.files[0]] if hasattr(data, "files") else data
    import cv2

    from .media import iter_frames

    frames = []
    size = None
    for clip in clips:
        start = 1300 if clip.endswith(".mp4") else 0
        for _, f in iter_frames(clip, start=start, max_frames=per_clip):
            size = size or (f.shape[1], f.shape[0])
            frames.append(f if (f.shape[1], f.shape[0]) == size else cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    if not frames:
        raise FbtoolError("no frame in the bench clips", "check the media folder")
    return np.stack(frames)


def make_frames(source: np.ndarray, count: int, size: tuple[int, int]) -> np.ndarray:
    """[count, H, W, 3] uint8: the source frames cycled and resized (bilinear) to size."""
    import cv2

    w, h = size
    unique = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) if f.shape[:2] != (h, w) else f for f in source]
    out = np.empty((count, h, w, 3), dtype=np.uint8)
    for i in range(count):
        out[i] = unique[i % len(unique)]
    return out


class PeakRss:
    """Samples this process's resident set size in a thread: the peak during one run."""

    def __init__(self, every_s: float = 0.01):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def _rss(self) -> int:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:  # Linux fallback
            with open(f"/proc/{os.getpid()}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every_s)

    def __enter__(self):
        self.peak = self._rss()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())
        return False


def _gpu_reset(cuda: bool):
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak(cuda: bool) -> float | None:
    if not cuda:
        return None
    import torch

    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def naive_loop(recipe, frames: np.ndarray, device: str, writer=None) -> dict:
    """(A): everything sequential, one frame at a time, fp32, host-side pre/post-processing."""
    from .blur.ops.cpu import naive_blur
    from .detector import detect_batch
    from .runners import TorchRunner

    runner = TorchRunner(recipe, device=device)
    m = recipe.mask
    lat = []
    t_start = time.perf_counter()
    for f in frames:
        t0 = time.perf_counter()
        d = detect_batch([f], recipe, runner)[0]
        blurred = naive_blur(f, d.boxes, d.landmarks, m.feather, m.max_tilt_deg)
        if writer is not None:
            writer.write(blurred)
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    la = np.asarray(lat) * 1000
    return {"frames": len(frames), "wall_s": wall, "fps": len(frames) / wall,
            "latency_ms_p50": float(np.percentile(la, 50)), "latency_ms_p99": float(np.percentile(la, 99))}


def _encode_factory(tmpdir: str, name: str, encode: bool):
    if not encode:
        return None
    from .blur.writer import BlurWriter

    return lambda: BlurWriter(Path(tmpdir) / f"{name}.mp4", fps=25.0)


def bench(recipe, backends=("ort", "torch"), device: str = "cpu", frames: int = 64, size=(1920, 1080),
          naive_frames: int | None = 32, encode: bool = True, batch: int | None = None, onnx=None, run_dir=None,
          precision: str = "fp32", clips=DEFAULT_CLIPS, frames_npy: str | None = None, warmup: int = 2,
          threads: int | None = None, fuse_gpu: bool = True, gpu_stages: str | None = None, log=print,
          cuda_blur: str | None = None) -> dict:
    """Run (A) and (B) per backend on the same frames; returns the result dict (see write_report).

    gpu_stages "graph": the CUDA engine runs the graphed stage (blur/pipeline/graphs.py) instead of the pipeline."""
    from .blur.app import run_frames
    from .blur.engines import make_engine
    from .blur.ops import DEFAULT_CUDA_BLUR
    from .gpumon import GpuMonitor

    cuda_blur = cuda_blur or DEFAULT_CUDA_BLUR
    cuda = device == "cuda"
    mon0 = GpuMonitor() if cuda else None  # device memory before this process's CUDA context
    graph = gpu_stages == "graph"
    src = load_source_frames(clips, npy=frames_npy)
    host = make_frames(src, frames, size)
    log(f"bench: {frames} frames {size[0]}x{size[1]} from {len(src)} unique source frames, device {device}, "
        f"encode {'on' if encode else 'off'}")
    result = {"settings": {"frames": frames, "size": f"{size[0]}x{size[1]}", "device": device, "encode": encode,
                           "naive_frames": min(naive_frames or frames, frames), "precision": precision,
                           "clips": list(clips) if not frames_npy else f"npy:{os.path.basename(frames_npy)}",
                           "batch": batch, "unique_source_frames": int(len(src)),
                           "gpu_stages": gpu_stages or ("fused" if fuse_gpu else "split"), "cuda_blur": cuda_blur},
              "machine": _machine(cuda), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        # (A) the naive loop
        nf = min(naive_frames or frames, frames)
        fac = _encode_factory(tmp, "naive", encode)
        _gpu_reset(cuda)
        mon_a = GpuMonitor(baseline_mb=mon0.baseline_mb) if cuda else None
        with PeakRss() as rss, (mon_a or contextlib.nullcontext()):
            if fac is None:
                a = naive_loop(recipe, host[:nf], device)
            else:
                with fac() as w:
                    a = naive_loop(recipe, host[:nf], device, w)
        a.update({"name": f"naive torch-{device} fp32", "kind": "naive", "rss_peak_mb": rss.peak / 2**20,
                  "gpu_peak_mb": _gpu_peak(cuda), **_process_gpu(mon_a)})
        result["runs"].append(a)
        log(f"  naive: {a['fps']:.1f} frames/s")
        pinned = None
        for backend in backends:
            eng = make_engine(recipe, backend, device if backend == "torch" else "cpu", onnx=onnx, run_dir=run_dir,
                              batch=batch, precision=precision, threads=threads, cuda_blur=cuda_blur)
            if eng.cuda and pinned is None:
                import torch

                pinned = torch.from_numpy(host).pin_memory()

            runner = None
            if eng.cuda and graph:
                from .blur.pipeline.graphs import GraphRunner

                runner = GraphRunner(eng.model, recipe, eng.batch, size[1], size[0], eng.dtype, "bgr", download=True)

            def once(n, name, eng=eng, pinned=pinned, runner=runner):
                fac = _encode_factory(tmp, name, encode)
                if runner is not None:
                    from .blur.pipeline.graphs import run_host_frames

                    if fac is None:
                        return run_host_frames(runner, pinned, n)
                    with fac() as w:
                        return run_host_frames(runner, pinned, n, write=w.write)
                if eng.cuda:
                    return run_frames(eng, recipe, pinned=pinned, count=n, writer_factory=fac, fuse_gpu=fuse_gpu)
                # Host engine: the blur works in place, so the source hands out copies (as a decoder would).
                return run_frames(eng, recipe, ((i, host[i].copy()) for i in range(n)), writer_factory=fac)

            once(min(frames, warmup * eng.batch), f"warm-{backend}")  # cudnn autotune, allocator, ORT arenas
            _gpu_reset(eng.cuda)
            mon = GpuMonitor(baseline_mb=mon0.baseline_mb) if eng.cuda else None
            with PeakRss() as rss, (mon or contextlib.nullcontext()):
                b = once(frames, backend)
            b.update({"name": f"fbtool {eng.name}" + (", CUDA graphs" if runner is not None else ""), "kind": "pipeline",
                      "backend": backend, "batch": eng.batch, **_process_gpu(mon),
                      "rss_peak_mb": rss.peak / 2**20, "gpu_peak_mb": _gpu_peak(eng.cuda),
                      "speedup_vs_naive": b["fps"] / a["fps"] if a["fps"] else None})
            result["runs"].append(b)
            log(f"  {b['name']}: {b['fps']:.1f} frames/s ({b['speedup_vs_naive']:.1f}x naive), bound by {b['bound_by']}")
            del eng, runner
    return result


def _process_gpu(mon) -> dict:
    """Whole-process GPU memory during a run (NVML: CUDA context included), beside torch's allocator peak."""
    if mon is None:
        return {}
    if not mon.samples:  # the naive loop: one reading now
        with mon:
            pass
    s = mon.summary()
    return {"gpu_process_peak_mb": s.get("gpu_mem_process_peak_mb") or s.get("gpu_mem_device_delta_peak_mb"),
            "gpu_util_mean_pct": s.get("gpu_util_mean_pct")}


def _machine(cuda: bool) -> dict:
    m = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        m["torch"] = torch.__version__
        if cuda:
            m["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        m["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return m


def to_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# fbtool bench: {s['frames']} frames {s['size']}, device {s['device']}, encode "
             f"{'on' if s['encode'] else 'off'}", "",
             f"Machine: {result['machine']}", "",
             "| run | frames | frames/s | x naive | latency p50 ms | p99 ms | peak RSS MB | peak GPU MB | bound by |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        gpu = "-" if r.get("gpu_peak_mb") is None else f"{r['gpu_peak_mb']:.0f}"
        if r.get("gpu_process_peak_mb") is not None:  # NVML: the whole process, CUDA context included
            gpu += f" (process {r['gpu_process_peak_mb']:.0f} MiB)"
        sp = "1.0" if r["kind"] == "naive" else f"{r['speedup_vs_naive']:.1f}"
        lines.append(f"| {r['name']} | {r['frames']} | {r['fps']:.1f} | {sp} | {r['latency_ms_p50']:.1f} | "
                     f"{r['latency_ms_p99']:.1f} | {r['rss_peak_mb']:.0f} | {gpu} | {r.get('bound_by') or '-'} |")
    for r in result["runs"]:
        if r["kind"] != "pipeline":
            continue
        lines += ["", f"Stages of {r['name']} (busy = own work; the largest bounds the pipeline):", "",
                  "| stage | busy s | waiting for input s | blocked on output s | busy ms/frame |", "|---|---|---|---|---|"]
        for st in r["stages"]:
            lines.append(f"| {st['stage']} | {st['busy_s']:.3f} | {st['wait_in_s']:.3f} | {st['wait_out_s']:.3f} | "
                         f"{1000 * st['busy_s'] / max(r['frames'], 1):.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(runs) + 1.5), dpi=100)
    names = [r["name"] for r in runs]
    fps = [r["fps"] for r in runs]
    bars = ax.barh(names, fps, color=["#999999" if r["kind"] == "naive" else "#2a7ab0" for r in runs])
    for bar, r in zip(bars, runs):
        label = f"{r['fps']:.1f}" + ("" if r["kind"] == "naive" else f"  ({r['speedup_vs_naive']:.1f}x)")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("frames/s (log scale)")
    s = result["settings"]
    ax.set_title(f"fbtool bench: {s['size']}, {s['device']}, encode {'on' if s['encode'] else 'off'}", fontsize=10)
    ax.invert_yaxis()
    ax.set_xlim(right=max(fps) * 8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(result: dict, out_dir, stem: str = "bench", markdown=to_markdown, draw=plot) -> dict:
    """JSON + Markdown + PNG of a bench result (`markdown`/`draw` render it: the streams bench passes its own)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    write_json(paths["json"], result)
    write_text(paths["md"], markdown(result))
    draw(result, paths["png"])
    return paths
