#!/usr/bin/env bash
# Issue 18c on the lent H200, one device call: fbtool's own NVDEC session (plugins/nvdec) against PyNvVideoCodec.
# Carried folder (.gpu18c): tree/ (git archive of the branch), inc/ffnvcodec/ (FFmpeg's nv-codec-headers),
# lib/ (the session built on the CPU machine: ok.so and three planted defects), data/faces1080.mp4
# (scripts/make_faces_clip.py), shared/models/retinaface_mnet025.pth, whl/ (PyNvVideoCodec 2.2.4 without its
# bundled FFmpeg sources and samples). Usage: bash tree/scripts/gpu_issue18c.sh $OUT   (from .gpu18c)
# Steps, most important first (each under its own timeout; what finished is in $OUT if the call runs out):
#   1 the gpu tests (built there from the headers when g++ is there, else the carried ok.so)
#   2 the same bit-exact test on each planted defect (must FAIL): no end-of-stream flush, one decode surface
#     fewer than min_num_decode_surfaces, the UV plane read from the display height instead of the coded one
#   3 NVML memory per decoder, fbtool vs PyNvVideoCodec, 1 / 8 / 32 decoders (scripts/gpu_streams_memory.py)
#   4 fbtool bench --streams 32, batch 32, decoders alternating fbtool / pynvvideocodec / fbtool / pynvvideocodec
#   5 the same at batch 16 (the memory target), each decoder once
#   6 fbtool blur, 2 inputs, --decoder fbtool, --no-encode
# lib/*.so were built on the CPU machine from plugins/nvdec with the headers of libffmpeg-nvenc-dev 11.1.5.2:
#   g++ -std=c++17 -O2 -fPIC -shared -fvisibility=hidden -I<copy of plugins/nvdec> -I/usr/include -o lib/X.so nvdec.cpp -ldl -lpthread
# with one sed each on the copy's nvdec.cpp (the source in the repository is never changed):
#   noflush:    s/CUVID_PKT_ENDOFSTREAM : 0/0 : 0/
#   surfminus1: s/int want = f->min_num_decode_surfaces + extra;/int want = f->min_num_decode_surfaces + extra - 1;/
#   chroma:     s/(size_t)((fmt.coded_height + 1) & ~1u) * pitch/(size_t)((h + 1) \& ~1) * pitch/
set -uo pipefail
OUT=${1:?}; cd "$(dirname "$0")/../.."   # .gpu18c
G=$PWD
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=$G/tree:/tmp/site PYTHONUNBUFFERED=1 FBTOOL_CACHE=/tmp/fbtool-cache FBTOOL_NVCODEC_INCLUDE=$G/inc \
  FBTOOL_TEST_CLIP=$G/data/faces1080.mp4
CLIP=$G/data/faces1080.mp4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; date -u
python3 -c "import torch; print('torch', torch.__version__)"
if command -v g++ >/dev/null && command -v make >/dev/null; then echo "g++ here: the library is built from the headers"
else echo "no g++: using the carried build"; export FBTOOL_NVDEC_LIB=$G/lib/ok.so; fi
FB=(python3 -c "import sys; from toolchain.cli import main; main(sys.argv[1:])")
cd tree
echo "== 1 pytest -m gpu tests/test_fbnvdec.py"
timeout 120 python3 -m pytest -q -m gpu tests/test_fbnvdec.py -p no:cacheprovider -rs -s 2>&1 | tail -12 | tee $OUT/test_gpu.txt
for plant in noflush surfminus1 chroma; do echo "== 2 planted: $plant (must fail)"
  FBTOOL_NVDEC_LIB=$G/lib/$plant.so timeout 45 python3 -m pytest -q -m gpu tests/test_fbnvdec.py -k bit_for_bit \
    -p no:cacheprovider 2>&1 | grep -E "^E .*(assert|differ|Error)|passed|failed" | head -4 | tee $OUT/plant_$plant.txt
done
echo "== 3 memory per decoder"
timeout 100 python3 scripts/gpu_streams_memory.py --clip $CLIP --streams 1,1,8,32 --decoders fbtool,pynvvideocodec \
  --out $OUT 2>&1 | tail -12
B=(bench --device cuda --streams 32 --source $CLIP --precision fp16 --frames-per-stream 300 --naive-frames 8)
i=0
for dec in fbtool pynvvideocodec fbtool pynvvideocodec; do i=$((i+1)); echo "== 4 streams 32 batch 32 --decoder $dec ($i)"
  timeout 60 "${FB[@]}" "${B[@]}" --batch 32 --decoder $dec -o $OUT --stem b32_${i}_$dec 2>&1 | grep -E "^\| 32|Error|streams:" ; done
for dec in fbtool pynvvideocodec; do echo "== 5 streams 32 batch 16 --decoder $dec"
  timeout 60 "${FB[@]}" "${B[@]}" --batch 16 --decoder $dec -o $OUT --stem b16_$dec 2>&1 | grep -E "^\| 32|Error|streams:" ; done
echo "== 6 blur, 2 inputs, --decoder fbtool"
mkdir -p /tmp/in; ln -sf $CLIP /tmp/in/a.mp4; ln -sf $CLIP /tmp/in/b.mp4
timeout 45 "${FB[@]}" blur /tmp/in/a.mp4 /tmp/in/b.mp4 -o /tmp/two --device cuda --backend torch --precision fp16 \
  --batch 32 --no-encode --decoder fbtool 2>&1 | tail -4
date -u
