#!/usr/bin/env bash
# Issue 18's leftovers on the lent H200 (docs/bench.md, "Several inputs, memory, CPU encoders"). Three calls:
# 1 (bench/results/gpu_issue18b_run1_*): bench --streams 32 pool / no pool, fbtool blur with 16 inputs
#   (encode / --no-encode), scripts/gpu_streams_check.py, the gpu tests, scripts/gpu_streams_memory.py.
# 2 (run2): bench --streams 32 pool / no pool / pool, scripts/gpu_encoders.py (16x0, 16x1, 4x4, no encode).
# 3 (this script): the gpu test of tests/test_streams.py (one decoding thread for two decoders), bench
#   --streams 32 no pool / pool with the copy inside the decoder, scripts/gpu_encoders.py 16x0 + no encode.
# Needs $CLIP (1080p H.264, scripts/make_faces_clip.py), the weights in ../shared/models or
# $FBTOOL_WEIGHTS_MIRROR, PyNvVideoCodec and PyAV importable. Usage: gpu_issue18b.sh OUT
set -uo pipefail
OUT=${1:?OUT_DIR}; CLIP=${CLIP:?}; PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 FBTOOL_CACHE=${FBTOOL_CACHE:-/tmp/fbtool-cache}
FB=($PY -c "import sys; from toolchain.cli import main; main(sys.argv[1:])")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cores: $(nproc)"; date -u
rc=0
echo "== pytest -m gpu tests/test_streams.py"
timeout 90 $PY -m pytest -q -m gpu tests/test_streams.py -p no:cacheprovider > "$OUT/pytest_gpu.log" 2>&1 || rc=1
tail -3 "$OUT/pytest_gpu.log"
n=0
for pool in no-frame-pool frame-pool; do
  n=$((n + 1)); echo "== bench --streams 32 --$pool ($n)"
  timeout 90 "${FB[@]}" bench --device cuda --streams 32 --source "$CLIP" --precision fp16 --batch 32 \
    --frames-per-stream 300 --naive-frames 8 --$pool -o /tmp/b --stem "s32_${n}_$pool" 2>&1 | grep "streams:" || rc=1
  cp /tmp/b/s32_${n}_$pool.json "$OUT/" || rc=1
done
IN=/tmp/in16; mkdir -p $IN; for i in $(seq -w 0 15); do ln -sf "$(realpath "$CLIP")" $IN/c$i.mp4; done
echo "== encoder pool, 16 inputs"
timeout 100 $PY scripts/gpu_encoders.py --out "$OUT" --max-frames 100 --layouts 16x0 $IN/*.mp4 || rc=1
date -u
exit $rc
