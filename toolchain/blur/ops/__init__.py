"""The blur itself: cpu (NumPy/OpenCV, the exact one), torch (batched per-face crops, exact to cpu),
dense (constant kernels per batch, proven by the pixel proof)."""
