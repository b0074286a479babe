#!/usr/bin/env bash
# The whole GPU bench in one command (made for the lent H100; see docs/bench.md):
#   1. scripts/gpu_check.py: CUDA post-processing vs the reference, the CUDA job vs the CPU reference
#      detector, and the pixel proof on the CUDA job's 1080p output;
#   2. fbtool bench: naive loop vs the pipelined torch CUDA path: fp32 (GPU stages fused in one thread,
#      and split in three), fp16; batch 32. Env PROFILE=0 skips scripts/gpu_profile.py.
# Frames: .bench_data/frames.npz (the shared clips' frames, made by `python scripts/bench_gpu.sh --prepare`
# on a machine with ../shared), upscaled to SIZE in host memory. Encoding is off (PyAV is not on the GPU
# machine, and no CPU encoder keeps up with thousands of 1080p frames/s): frames end in pinned host memory.
# Usage: scripts/bench_gpu.sh [OUT_DIR]    env: DEVICE (cuda), SIZE (1920x1080), FRAMES (1536), PYTHON
set -uo pipefail
DATA=${BENCH_DATA:-.bench_data}
if [ "${1:-}" = "--prepare" ]; then
  mkdir -p "$DATA"
  ${PYTHON:-python3} -c "
import numpy as np, shutil
from toolchain.bench import load_source_frames
np.savez_compressed('$DATA/frames.npz', frames=load_source_frames())
shutil.copy('../shared/models/retinaface_mnet025.pth', '$DATA/')"
  exit $?
fi
OUT=${1:-${OUT:-bench/results/gpu}}
DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-1920x1080}; FRAMES=${FRAMES:-1536}; NAIVE=${NAIVE:-24}
PY=${PYTHON:-python3}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} FBTOOL_WEIGHTS_MIRROR=$DATA FBTOOL_CACHE=${FBTOOL_CACHE:-/tmp/fbtool-cache} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
fb() { $PY -c "import sys; from toolchain.cli import main; main(sys.argv[1:])" "$@"; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__, 'numpy', numpy.__version__)"
$PY -c "import av; print('PyAV', av.__version__)" 2>/dev/null || echo "PyAV: not installed (encode off)"
rc=0
if [ "$DEVICE" = cuda ] && [ "${PROFILE:-1}" = 1 ]; then
  echo "== gpu_profile"; $PY scripts/gpu_profile.py --frames-npy "$DATA/frames.npz" --size "$SIZE" --out "$OUT" || rc=1
fi
echo "== gpu_check"; $PY scripts/gpu_check.py --device "$DEVICE" --frames-npy "$DATA/frames.npz" --size "$SIZE" \
  --count 16 --out "$OUT" || rc=1
common=(--device "$DEVICE" --backends torch --size "$SIZE" --no-encode --frames-npy "$DATA/frames.npz")
echo "== bench fp32 batch 32"; fb bench "${common[@]}" --frames "$FRAMES" --naive-frames "$NAIVE" --batch 32 \
  --precision fp32 -o "$OUT" --stem gpu_fp32_b32 || rc=1
tmp=$(mktemp -d)
echo "== bench fp32 batch 32, split GPU stages"; fb bench "${common[@]}" --frames "$FRAMES" --naive-frames 8 \
  --batch 32 --precision fp32 --gpu-stages split -o "$tmp" --stem gpu_fp32_b32_split \
  && cp "$tmp"/gpu_fp32_b32_split.{json,md} "$OUT"/ || rc=1
echo "== bench fp16 batch 32"; fb bench "${common[@]}" --frames "$FRAMES" --naive-frames 8 --batch 32 \
  --precision fp16 -o "$tmp" --stem gpu_fp16_b32 && cp "$tmp"/gpu_fp16_b32.{json,md} "$OUT"/ || rc=1
exit $rc
