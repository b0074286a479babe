"""GPU utilisation, NVDEC utilisation and GPU memory, as NVML reports them (nvidia-ml-py), sampled in a
thread during a run. Memory is the whole process's (CUDA context, cuDNN/cuBLAS workspaces, decoder
surfaces, PyTorch's cache): what nvidia-smi shows, not torch's allocator peak."""

from __future__ import annotations

import os
import threading
import time


def _nvml():
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no NVML library, no driver, no GPU
        return None


class GpuMonitor:
    """`with GpuMonitor() as m: ...` -> m.summary(): means of GPU / decoder utilisation (%), peak process
    memory (MiB, NVML per-process where the driver lists the process, else device used minus the
    baseline taken when the monitor was made)."""

    def __init__(self, every_s: float = 0.05, index: int = 0, baseline_mb: float | None = None):
        self.nv = _nvml()
        self.every_s = every_s
        self.h = self.nv.nvmlDeviceGetHandleByIndex(index) if self.nv else None
        self.baseline_mb = self.device_used_mb() if baseline_mb is None else baseline_mb
        self._stop = threading.Event()
        self.samples: list[tuple[float, float, float | None, float]] = []

    @property
    def ok(self) -> bool:
        return self.h is not None

    def device_used_mb(self) -> float | None:
        if not self.ok:
            return None
        return self.nv.nvmlDeviceGetMemoryInfo(self.h).used / 2**20

    def process_mb(self) -> float | None:
        if not self.ok:
            return None
        try:
            for p in self.nv.nvmlDeviceGetComputeRunningProcesses(self.h):
                if p.pid == os.getpid() and p.usedGpuMemory:
                    return p.usedGpuMemory / 2**20
        except Exception:
            pass
        return None

    def _sample(self):
        u = self.nv.nvmlDeviceGetUtilizationRates(self.h)
        try:
            dec = float(self.nv.nvmlDeviceGetDecoderUtilization(self.h)[0])
        except Exception:
            dec = None
        used = self.device_used_mb() - (self.baseline_mb or 0.0)
        proc = self.process_mb()
        self.samples.append((float(u.gpu), used, dec, proc if proc is not None else -1.0))

    def _loop(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.every_s)

    def __enter__(self):
        self.samples = []
        if self.ok:
            self._stop.clear()
            self._t = threading.Thread(target=self._loop, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        if self.ok:
            self._stop.set()
            self._t.join()
            self._sample()
        return False

    def summary(self) -> dict:
        if not self.samples:
            return {"nvml": False}
        gpu = [s[0] for s in self.samples]
        dec = [s[2] for s in self.samples if s[2] is not None]
        proc = [s[3] for s in self.samples if s[3] >= 0]
        return {"nvml": True, "gpu_util_mean_pct": sum(gpu) / len(gpu),
                "nvdec_util_mean_pct": sum(dec) / len(dec) if dec else None,
                "gpu_mem_process_peak_mb": max(proc) if proc else None,
                "gpu_mem_device_delta_peak_mb": max(s[1] for s in self.samples),
                "samples": len(self.samples)}
