"""Precision: calibration set, activation statistics, INT8 (Q/DQ and legacy cache), FP16, accuracy gate.

One module per concern so other stages can reuse the pieces: the engine stage feeds TensorRT's own
calibrator from `dataset.load_calibration_set` and `cache.read_cache`; `fbtool validate` calls
`gate.accuracy_gate`. Heavy packages (onnxruntime, modelopt, torch) are imported inside functions.
"""
