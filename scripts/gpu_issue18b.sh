#!/usr/bin/env bash
# Issue 18's leftovers on the lent H200 in one call (docs/bench.md, "Several inputs, memory, CPU encoders"):
#   1. bench --streams 32 with the frame pool and without it (a tensor per decoded frame, as before);
#   2. fbtool blur with 16 inputs at once: CPU encoders (PyAV/x264, one thread per core) vs --no-encode;
#   3. scripts/gpu_streams_check.py (fp32, fp16 with fp32 heads, all-fp16; NVDEC streams through the pool);
#   4. the gpu-marked tests of tests/test_streams.py and tests/test_graphs.py;
#   5. scripts/gpu_streams_memory.py: NVDEC's own memory per stream.
# Needs $CLIP (1080p H.264, scripts/make_faces_clip.py), $NPZ (scripts/bench_gpu.sh --prepare), the weights
# in ../shared/models or $FBTOOL_WEIGHTS_MIRROR, PyNvVideoCodec and PyAV importable. Usage: gpu_issue18b.sh OUT
set -uo pipefail
OUT=${1:?OUT_DIR}; CLIP=${CLIP:?}; NPZ=${NPZ:?}; PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 FBTOOL_CACHE=${FBTOOL_CACHE:-/tmp/fbtool-cache}
FB=($PY -c "import sys; from toolchain.cli import main; main(sys.argv[1:])")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cores: $(nproc)"; date -u
rc=0
for pool in frame-pool no-frame-pool; do
  echo "== bench --streams 32 --$pool"
  timeout 100 "${FB[@]}" bench --device cuda --streams 32 --source "$CLIP" --precision fp16 --batch 32 \
    --frames-per-stream 300 --naive-frames 8 --$pool -o "$OUT" --stem "streams32_$pool" 2>&1 | grep -v "^|" || rc=1
done
IN=/tmp/in16; mkdir -p $IN; for i in $(seq -w 0 15); do ln -sf "$(realpath "$CLIP")" $IN/c$i.mp4; done
for enc in encode no-encode; do
  echo "== blur 16 inputs --$enc"
  timeout 120 "${FB[@]}" blur $IN -o /tmp/out_$enc --device cuda --backend torch --precision fp16 --batch 32 \
    --max-frames 150 --stats --$enc > "$OUT/blur16_$enc.log" 2>&1 || rc=1
  head -3 "$OUT/blur16_$enc.log"; tail -2 "$OUT/blur16_$enc.log"; ls /tmp/out_$enc | head -3; ls /tmp/out_$enc | wc -l
done
echo "== gpu_streams_check"; timeout 150 $PY scripts/gpu_streams_check.py --frames-npy "$NPZ" --clip "$CLIP" \
  --out "$OUT" > "$OUT/gpu_streams_check.log" 2>&1 || rc=1
$PY -c "
import json; r = json.load(open('$OUT/gpu_streams_check.json'))
for k in ('host_frames_fp32', 'host_frames_fp16', 'host_frames_fp16_all'): print(k, r.get(k))
print('nvdec', {k: v for k, v in r['nvdec_streams'].items() if k != 'streams'}, r['nvdec_streams']['streams'][0]); print('ok', r['ok'])" || rc=1
echo "== pytest -m gpu"; timeout 120 $PY -m pytest -q -m gpu tests/test_streams.py tests/test_graphs.py -p no:cacheprovider 2>&1 | tail -4 || rc=1
echo "== memory probe"; timeout 60 $PY scripts/gpu_streams_memory.py --clip "$CLIP" --streams 1,8,32 --out "$OUT" || rc=1
date -u
exit $rc
