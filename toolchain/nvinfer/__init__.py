"""DeepStream's gst-nvinfer as a runtime (a backend, below the stages): its config-key table and
keyfile reader (keys, keyfile), the harness that drives the compiled custom parser exactly as
nvinfer does (harness), and the Python emulation of nvinfer (emulation/). The deepstream stage
emits configs with these; validate and blur run them; nothing here imports a stage."""
