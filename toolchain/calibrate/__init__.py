"""Precision: activation statistics, INT8 (Q/DQ and legacy cache), FP16, accuracy gate.

One module per concern. What other stages read lives below the stages: the calibration set format
in toolchain.calibset, the legacy cache format in toolchain.trt.calib_cache. Heavy packages
(onnxruntime, modelopt, torch) are imported inside functions.
"""
