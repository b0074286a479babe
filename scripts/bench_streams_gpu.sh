#!/usr/bin/env bash
# The issue-18 GPU run in one command (lent H200; docs/bench.md "CUDA graphs and many streams"):
#   1. tests marked gpu in tests/test_graphs.py (graph replay == eager body);
#   2. scripts/gpu_streams_check.py: graphed stage vs the CPU reference + pixel proof (host frames), NVDEC
#      streams vs the CPU reference on the same decoded frames + proof on the decoded-and-blurred frames;
#   3. fbtool bench host frames 1080p fp16 batch 32: today's fused pipeline, then the CUDA-graph stage;
#   4. fbtool bench --streams 1,4,16,32,64 on a 1080p H.264 clip (NVDEC, frames stay on the GPU).
# Needs: .bench_data/frames.npz (scripts/bench_gpu.sh --prepare), the weights in $FBTOOL_WEIGHTS_MIRROR,
# $CLIP (a 1080p H.264 clip), PyNvVideoCodec importable. Usage: scripts/bench_streams_gpu.sh OUT_DIR
set -uo pipefail
OUT=${1:?OUT_DIR}
CLIP=${CLIP:?set CLIP to a 1080p H.264 clip}
FRAMES=${FRAMES:-1536}; STREAMS=${STREAMS:-1,4,16,32,64}; PER_STREAM=${PER_STREAM:-300}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 FBTOOL_CACHE=${FBTOOL_CACHE:-/tmp/fbtool-cache}
mkdir -p "$OUT"
FB=($PY -c "import sys; from toolchain.cli import main; main(sys.argv[1:])")
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
$PY -c "import torch, triton, PyNvVideoCodec, pynvml; print('torch', torch.__version__, 'triton', triton.__version__, 'PyNvVideoCodec', PyNvVideoCodec.__version__)"
rc=0
echo "== pytest -m gpu"; timeout 120 $PY -m pytest -q -m gpu tests/test_graphs.py -p no:cacheprovider || rc=1
echo "== gpu_streams_check"; timeout 150 $PY scripts/gpu_streams_check.py --frames-npy .bench_data/frames.npz \
  --clip "$CLIP" --out "$OUT" || rc=1
common=(--device cuda --backends torch --size 1920x1080 --no-encode --frames-npy .bench_data/frames.npz --batch 32 --precision fp16)
[ "${SKIP_FUSED:-0}" = 1 ] || { echo "== bench host frames fp16, fused pipeline (today)"; timeout 130 "${FB[@]}" bench "${common[@]}" --frames "$FRAMES" \
  --naive-frames 16 --gpu-stages fused -o "$OUT" --stem gpu_fp16_b32_fused || rc=1; }
echo "== bench host frames fp16, CUDA graphs"; timeout 130 "${FB[@]}" bench "${common[@]}" --frames "${GRAPH_FRAMES:-$FRAMES}" \
  --naive-frames 16 --gpu-stages graph -o "$OUT" --stem gpu_fp16_b32_graph || rc=1
echo "== bench streams"; timeout 220 "${FB[@]}" bench --device cuda --streams "$STREAMS" --source "$CLIP" --precision fp16 \
  --batch 32 --frames-per-stream "$PER_STREAM" --naive-frames 16 -o "$OUT" --stem gpu_streams || rc=1
if [ "${GIL_VARIANT:-0}" = 1 ]; then
  echo "== bench streams, GIL switch interval 0.5 ms"; FBTOOL_GIL_SWITCH_S=0.0005 timeout 150 "${FB[@]}" bench --device cuda \
    --streams 32,64 --source "$CLIP" --precision fp16 --batch 32 --frames-per-stream "$PER_STREAM" --naive-frames 8 \
    -o "$OUT" --stem gpu_streams_gil || rc=1
fi
exit $rc
