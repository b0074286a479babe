"""The blur itself: cpu (NumPy/OpenCV, the exact one), torch (batched per-face crops, exact to cpu),
dense (constant kernels per batch, proven by the pixel proof). On CUDA the job's option
(`fbtool blur --cuda-blur`) picks torch ("crops") or dense."""

CUDA_BLUR_MODES = ("dense", "crops")
DEFAULT_CUDA_BLUR = "dense"  # measured faster on the H100 and passes the proof (docs/bench.md)
