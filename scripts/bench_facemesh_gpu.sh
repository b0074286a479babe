#!/usr/bin/env bash
# FaceMesh cost per face on the GPU machine (docs/contour.md), self-contained:
#   here (with ../shared):   scripts/bench_facemesh_gpu.sh --prepare      -> .bench_data/facemesh_crops.npz + facemesh.pth
#   on the GPU (carry .bench_data, or the whole snapshot): scripts/bench_facemesh_gpu.sh [OUT_DIR]
# Times torch CUDA fp32/fp16 and onnxruntime (CUDA EP where installed) at batch 1, 8, 32 on 32 real face crops,
# plus the CPU runtimes of that machine; writes OUT_DIR/facemesh_cost_cuda.{json,md} (default bench/results/facemesh).
set -uo pipefail
DATA=${BENCH_DATA:-.bench_data}
PY=${PYTHON:-python3}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} FBTOOL_CACHE=${FBTOOL_CACHE:-/tmp/fbtool-cache} PYTHONUNBUFFERED=1
if [ "${1:-}" = "--prepare" ]; then
  exec $PY scripts/bench_facemesh.py --prepare "$DATA"
fi
OUT=${1:-bench/results/facemesh}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec $PY scripts/bench_facemesh.py --data "$DATA" --device "${DEVICE:-cuda}" --out "$OUT" --repeats "${REPEATS:-20}"
