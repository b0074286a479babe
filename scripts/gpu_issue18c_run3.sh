#!/usr/bin/env bash
# Issue 18c, third H200 call (same carried folder as gpu_issue18c.sh): the per-decoder memory with every
# decoder open, and the knobs of the decoding side and of the memory target, each a `fbtool bench --streams 32`
# process of its own. Everything lands in $OUT/run3.tgz (a call returns at most 8 files).
#   1 pytest -m gpu tests/test_fbnvdec.py (ABI 2: display_delay), and the bit-exact test at display delay 2
#   2 scripts/gpu_streams_memory.py --streams 1,1,8,32 --decoders fbtool,pynvvideocodec (first pair: warm-up)
#   3 batch 32: fbtool with 8 (default) / 16 / 32 decoding threads, PyNvVideoCodec, fbtool at display delay 2
#   4 the memory target: fbtool batch 16 with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, batch 8 both ways
set -uo pipefail
OUT=${1:?}; cd "$(dirname "$0")/../.."   # .gpu18c
G=$PWD; R=/tmp/r3; mkdir -p $R
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=$G/tree:/tmp/site PYTHONUNBUFFERED=1 FBTOOL_CACHE=/tmp/fbtool-cache FBTOOL_NVCODEC_INCLUDE=$G/inc \
  FBTOOL_TEST_CLIP=$G/data/faces1080.mp4
CLIP=$G/data/faces1080.mp4
FB=(python3 -c "import sys; from toolchain.cli import main; main(sys.argv[1:])")
B=(bench --device cuda --streams 32 --source $CLIP --precision fp16 --frames-per-stream 300 --naive-frames 8)
cd tree
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; date -u
echo "== 1 pytest -m gpu"
timeout 60 python3 -m pytest -q -m gpu tests/test_fbnvdec.py -p no:cacheprovider -rs -s 2>&1 | tail -5
echo "== 1b bit-exact at display delay 2"
FBTOOL_NVDEC_DISPLAY_DELAY=2 timeout 40 python3 -m pytest -q -m gpu tests/test_fbnvdec.py -k bit_for_bit \
  -p no:cacheprovider -s 2>&1 | tail -3 | tee $R/delay2_test.txt
echo "== 2 memory per decoder (every decoder open)"
timeout 80 python3 scripts/gpu_streams_memory.py --clip $CLIP --streams 1,1,8,32 --decoders fbtool,pynvvideocodec \
  --out $R 2>&1 | cut -c1-400
# run STEM "ENV=VALUE ..." ARGS...: one bench process with those variables set
run() { local stem=$1 envs=$2; shift 2; echo "== $stem ($envs $*)"
  env $envs timeout 45 "${FB[@]}" "${B[@]}" "$@" -o $R --stem $stem 2>&1 | grep -E "^\| 32|Error" ; }
T8=FBTOOL_DECODE_THREADS=8; EX=PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
run b32_fbtool_t8 "$T8" --batch 32 --decoder fbtool
run b32_fbtool_t16 "FBTOOL_DECODE_THREADS=16" --batch 32 --decoder fbtool
run b32_pynvvideocodec_t8 "$T8" --batch 32 --decoder pynvvideocodec
run b32_fbtool_t32 "FBTOOL_DECODE_THREADS=32" --batch 32 --decoder fbtool
if grep -q "1 passed" $R/delay2_test.txt; then run b32_fbtool_t8_delay2 "$T8 FBTOOL_NVDEC_DISPLAY_DELAY=2" --batch 32 --decoder fbtool
else echo "== display delay 2 not bit-exact: not benched"; fi
run b16_fbtool_expandable "$T8 $EX" --batch 16 --decoder fbtool
run b8_fbtool "$T8" --batch 8 --decoder fbtool
run b8_fbtool_expandable "$T8 $EX" --batch 8 --decoder fbtool
date -u
} 2>&1 | tee $R/run3.log
rm -f $R/*.png; tar czf $OUT/run3.tgz -C $R .; cp $R/run3.log $OUT/
